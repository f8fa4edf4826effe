package service

import (
	"errors"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// ErrInvalidConfig is matched (with errors.Is) by every error about a
// Config or an option that cannot be used. The concrete error is a
// *FieldError naming the field.
var ErrInvalidConfig = errors.New("service: invalid configuration")

// FieldError names a bad field of Config (such as "Shutdown.Drain") or a
// bad option, with the offending value, the reason and the cause, behind
// ErrInvalidConfig. It is the one field-error type of the module, so
// errors.As with the FieldError of any Vitamin package finds it. It is not
// modified after it is returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

func invalid(field string, value any, reason string) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, nil)
}
