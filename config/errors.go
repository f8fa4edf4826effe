package config

import (
	"errors"
	"fmt"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

var (
	// ErrInvalidConfig is matched by the errors about bad settings given
	// to Load or to a source's constructor (such as the Consul KV
	// source's). The concrete error is a *FieldError naming the field.
	ErrInvalidConfig = errors.New("config: invalid configuration")

	// ErrRejected is matched by every *RejectedError: a change that failed
	// parsing or validation and was not applied.
	ErrRejected = errors.New("config: change rejected")

	// ErrInvalidValue is wrapped by the errors of the built-in parsers and
	// validators (Between, OneOf): the value has the wrong type or is out
	// of range.
	ErrInvalidValue = errors.New("config: invalid value")

	// ErrUnknownKey is wrapped by the *KeyError for a key, under the
	// prefix a struct is decoded from, that names no field: most often a
	// typo ("max_atempts"), which must not silently leave the default in
	// place.
	ErrUnknownKey = errors.New("config: unknown key")

	// ErrSource is matched by every *SourceError: a layer could not be
	// read.
	ErrSource = errors.New("config: source failed")

	// ErrWatching is returned by Watch when the configuration is already
	// being watched.
	ErrWatching = errors.New("config: already watching")
)

// FieldError names a bad setting: the field (such as "Layers.File" or
// "Config.WaitTime"), the offending value, the reason and the cause. It
// matches [ErrInvalidConfig] with errors.Is and unwraps to the cause. It is
// the one field-error type of the module, so errors.As with the FieldError
// of any Vitamin package finds it. It is not modified after it is
// returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

// RejectedError reports a change that was not applied: a value that did
// not parse or failed a validator (Key is set), or a whole layer whose new
// content could not be read or parsed (Key is empty). The last good value
// stays. It matches ErrRejected with errors.Is and unwraps to the reason,
// which for a struct (Bind, Follow) holds a *KeyError for each key at
// fault. It is not changed after it is reported, so it is safe to read
// from any goroutine.
type RejectedError struct {
	// Key is the property's key, or the prefix of Bind or Follow; empty
	// when a whole layer update was rejected.
	Key string
	// Layer names the layer whose update was rejected, such as
	// "file:app.yaml"; empty for a property.
	Layer string
	// Value is the raw value that was rejected: nested maps for a prefix,
	// nil for a layer.
	Value any
	// Err is the reason.
	Err error
}

// Error names the key (or layer), the value and the reason.
func (e *RejectedError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("config: update of layer %s rejected: %v", e.Layer, e.Err)
	}
	if _, section := e.Value.(map[string]any); section || e.Value == nil {
		return fmt.Sprintf("config: change under %q rejected: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("config: value %v for key %q rejected: %v", e.Value, e.Key, e.Err)
}

// Is reports whether target is ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Unwrap returns the reason.
func (e *RejectedError) Unwrap() error { return e.Err }

// SourceError reports a layer that could not be read when the
// configuration was loaded. It matches ErrSource with errors.Is and unwraps
// to the cause.
type SourceError struct {
	// Layer names the layer, such as "file:app.yaml" or "consul:config/orders/".
	Layer string
	// Err is the cause.
	Err error
}

// Error names the layer and the cause.
func (e *SourceError) Error() string {
	return fmt.Sprintf("config: layer %s: %v", e.Layer, e.Err)
}

// Is reports whether target is ErrSource.
func (e *SourceError) Is(target error) bool { return target == ErrSource }

// Unwrap returns the cause.
func (e *SourceError) Unwrap() error { return e.Err }
