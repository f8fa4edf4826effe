package tracing

import (
	"errors"
	"fmt"
)

// ErrInvalidConfig is the sentinel wrapped by every *ConfigError: the
// configuration given to New or Setup cannot be used.
var ErrInvalidConfig = errors.New("tracing: invalid config")

// ConfigError says which field of Config (or which OTEL_* environment
// variable standing in for it) is wrong, and why. It matches
// ErrInvalidConfig with errors.Is. A ConfigError is immutable and safe for
// concurrent use.
type ConfigError struct {
	// Field names the Config field, or the environment variable the value
	// came from, such as "Exporter" or "OTEL_TRACES_EXPORTER".
	Field string
	// Reason says what is wrong with the value.
	Reason string
	// Err is the underlying cause, if any.
	Err error
}

// Error returns a message that names the field.
func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("tracing: invalid config: %s: %s", e.Field, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrInvalidConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the underlying cause.
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(field, reason string, err error) error {
	return &ConfigError{Field: field, Reason: reason, Err: err}
}
