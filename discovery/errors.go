package discovery

import (
	"errors"
	"fmt"
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
	// constructor; the message names the field.
	ErrInvalidConfig = errors.New("discovery: invalid configuration")
)

// FieldError says which field of a registration is wrong and why. It
// matches [ErrInvalidRegistration] with errors.Is. It is not modified after
// it is returned, so it is safe for concurrent use.
type FieldError struct {
	// Field is the path of the bad field, such as "Instance.Port" or
	// "Check.HTTP".
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying cause, if any (a URL parse error…).
	Err error
}

// Error names the field and says what is wrong with it.
func (e *FieldError) Error() string {
	msg := "discovery: invalid registration: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is [ErrInvalidRegistration].
func (e *FieldError) Is(target error) bool { return target == ErrInvalidRegistration }

// Unwrap returns the underlying cause, if any.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
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
