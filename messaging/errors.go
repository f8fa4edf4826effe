package messaging

import (
	"errors"
	"fmt"
	"time"

	"github.com/vitamin-go/vitamin/internal/fielderr"
	"github.com/vitamin-go/vitamin/resilience"
)

// Sentinel errors. Match them with errors.Is; never compare error text.
// Every error of this package is immutable once returned and safe to share
// between goroutines.
var (
	// ErrInvalidConfig is matched by every error about a bad Config field,
	// option or argument. The concrete error is a *FieldError naming it.
	ErrInvalidConfig = errors.New("messaging: invalid configuration")
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

// FieldError names a bad setting — a Config field such as
// "ConsumerConfig.MaxDeliver", an option such as "WithCodec", or an
// argument such as "js" — with the offending value, the reason and the
// cause, if any. It matches ErrInvalidConfig with errors.Is. It is not
// modified after it is returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

// invalid returns a *FieldError behind ErrInvalidConfig; value may be nil.
func invalid(field string, value any, reason string) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, nil)
}

// DecodeError is returned by Message.Decode when the payload cannot be
// decoded. Its Is reports true for ErrUndecodable and
// resilience.ErrPermanent: no retry can fix it.
type DecodeError struct {
	ContentType string
	Err         error
}

// Error names the content type and the codec's error.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("messaging: decode %q payload: %v", e.ContentType, e.Err)
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUndecodable or resilience.ErrPermanent.
func (e *DecodeError) Is(target error) bool {
	return target == ErrUndecodable || target == resilience.ErrPermanent
}

// ClaimedError is returned by Store.Claim when another delivery holds the
// key's lease. Its Is reports true for ErrClaimed.
type ClaimedError struct {
	Key   string
	Until time.Time // when the lease expires, if known
}

// Error names the key and when its lease expires.
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

// Error names the stream, the differing fields and the server's error.
func (e *StreamConflictError) Error() string {
	return fmt.Sprintf("messaging: stream %q exists with a conflicting configuration (fields %v): %v", e.Stream, e.Fields, e.Err)
}

// Unwrap returns the server's error.
func (e *StreamConflictError) Unwrap() error { return e.Err }

// Is reports whether target is ErrStreamConflict.
func (e *StreamConflictError) Is(target error) bool { return target == ErrStreamConflict }
