package tracing

import (
	"errors"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// ErrInvalidConfig is matched (with errors.Is) by every error about a
// configuration given to New or Setup that cannot be used. The concrete
// error is a *FieldError naming the field.
var ErrInvalidConfig = errors.New("tracing: invalid configuration")

// FieldError names a bad field of Config, or the OTEL_* environment
// variable standing in for it (such as "Exporter" or
// "OTEL_TRACES_EXPORTER"), with the offending value, the reason and the
// cause, if any. It matches ErrInvalidConfig with errors.Is and unwraps to
// the cause. It is the one field-error type of the module, so errors.As
// with the FieldError of any Vitamin package finds it. It is not modified
// after it is returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

// configErr returns a *FieldError behind ErrInvalidConfig; value and err
// may be nil.
func configErr(field string, value any, reason string, err error) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, err)
}
