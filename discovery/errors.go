package discovery

import (
	"errors"
	"fmt"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

var (
	// ErrInvalidRegistration is matched (with errors.Is) by every error
	// about bad registration input. The concrete error is a *FieldError
	// naming the field.
	ErrInvalidRegistration = errors.New("discovery: invalid registration")

	// ErrDuplicateInstance is matched by the error returned when an
	// instance ID is already registered with a different address or port.
	// The concrete error is a *DuplicateError.
	ErrDuplicateInstance = errors.New("discovery: duplicate instance ID")

	// ErrClosed is returned by a watch, watcher or registry after Close.
	ErrClosed = errors.New("discovery: closed")

	// ErrInvalidConfig is matched by errors about bad settings given to a
	// constructor. The concrete error is a *FieldError naming the field.
	ErrInvalidConfig = errors.New("discovery: invalid configuration")
)

// FieldError names a bad field of a registration (behind
// [ErrInvalidRegistration]) or of the settings given to a constructor
// (behind [ErrInvalidConfig]): the field, the offending value, the reason
// and the cause. errors.Is matches the sentinel it was made with; Unwrap
// returns the cause. It is the one field-error type of the module, so
// errors.As with the FieldError of any Vitamin package finds it. It is not
// modified after it is returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

func fieldErr(field, format string, args ...any) error {
	return fielderr.Errorf(ErrInvalidRegistration, field, format, args...)
}

// DuplicateError reports an instance ID that is already registered at a
// different endpoint. It matches [ErrDuplicateInstance] with errors.Is. It
// is not modified after it is returned, so it is safe for concurrent use.
type DuplicateError struct {
	// ID is the instance ID both registrations use.
	ID string
	// Existing and Requested are the endpoints ("host:port") of the
	// registered instance and of the rejected one.
	Existing, Requested string
}

// Error names the ID and both endpoints.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("discovery: Instance.ID: %q is already registered at %s, not at %s", e.ID, e.Existing, e.Requested)
}

// Is reports whether target is [ErrDuplicateInstance].
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicateInstance }
