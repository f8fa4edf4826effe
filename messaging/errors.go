package messaging

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is; never compare error text.
// Every error of this package is immutable once returned and safe to share
// between goroutines.
var (
	// ErrInvalidConfig is wrapped by every error about a bad Config field or
	// option; the message names the field.
	ErrInvalidConfig = errors.New("messaging: invalid configuration")
	// ErrPermanent marks a handler error that no retry can fix. Wrap an
	// error with Permanent to dead-letter the message at once.
	ErrPermanent = errors.New("messaging: permanent failure")
	// ErrUndecodable is returned by Message.Decode when the payload cannot
	// be decoded; returned from a handler, it dead-letters the message.
	ErrUndecodable = errors.New("messaging: undecodable payload")
	// ErrDuplicate is returned by Store.Claim when the key was already
	// processed.
	ErrDuplicate = errors.New("messaging: message already processed")
	// ErrClaimed is returned by Store.Claim when another delivery holds a
	// live lease on the key.
	ErrClaimed = errors.New("messaging: message is being processed elsewhere")
	// ErrStoreFull is returned by the memory store when every slot holds a
	// live claim.
	ErrStoreFull = errors.New("messaging: idempotency store is full")
	// ErrStreamConflict is wrapped when an existing stream's configuration
	// conflicts with the requested one and cannot be updated to it.
	ErrStreamConflict = errors.New("messaging: stream configuration conflicts with the existing stream")
	// ErrClosed is returned when publishing through a closed Publisher or
	// running a Consumer twice.
	ErrClosed = errors.New("messaging: closed")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// PermanentError is a handler failure that must not be retried. It is
// created by Permanent. Its Is reports true for ErrPermanent.
type PermanentError struct {
	Err error
}

// Permanent marks err as permanent: the consumer dead-letters the message
// instead of retrying it. Permanent(nil) returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Is reports whether target is ErrPermanent.
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// DecodeError is returned by Message.Decode when the payload cannot be
// decoded. Its Is reports true for ErrUndecodable and ErrPermanent.
type DecodeError struct {
	ContentType string
	Err         error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("messaging: decode %q payload: %v", e.ContentType, e.Err)
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUndecodable or ErrPermanent.
func (e *DecodeError) Is(target error) bool {
	return target == ErrUndecodable || target == ErrPermanent
}

// ClaimedError is returned by Store.Claim when another delivery holds the
// key's lease. Its Is reports true for ErrClaimed.
type ClaimedError struct {
	Key   string
	Until time.Time // when the lease expires, if known
}

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("messaging: key %q is claimed until %s", e.Key, e.Until.Format(time.RFC3339Nano))
}

// Is reports whether target is ErrClaimed.
func (e *ClaimedError) Is(target error) bool { return target == ErrClaimed }

// StreamConflictError says that a stream exists with a configuration that
// cannot be updated to the requested one. Its Is reports true for
// ErrStreamConflict; Unwrap returns the server's error.
type StreamConflictError struct {
	Stream string
	// Fields names the configuration fields that differ.
	Fields []string
	Err    error
}

func (e *StreamConflictError) Error() string {
	return fmt.Sprintf("messaging: stream %q exists with a conflicting configuration (fields %v): %v", e.Stream, e.Fields, e.Err)
}

// Unwrap returns the server's error.
func (e *StreamConflictError) Unwrap() error { return e.Err }

// Is reports whether target is ErrStreamConflict.
func (e *StreamConflictError) Is(target error) bool { return target == ErrStreamConflict }
