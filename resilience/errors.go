package resilience

import (
	"context"
	"errors"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// Sentinel errors. Every error a Vitamin executor, round tripper, middleware
// or interceptor returns because of a policy matches one of these with
// errors.Is, and keeps failsafe-go's own error in its chain, so
// errors.Is(err, circuitbreaker.ErrOpen) holds as well.
//
// ErrCircuitOpen and ErrBudgetExhausted are failsafe-go's own sentinels
// (circuitbreaker.ErrOpen and budget.ErrExceeded), so they also match errors
// returned by failsafe-go used directly. For failsafe-go's bulkhead, rate
// limiter and timeout errors used directly, call Classify.
var (
	// ErrCircuitOpen: the circuit breaker is open (or half-open with all
	// probes taken) and the call was not attempted.
	ErrCircuitOpen = circuitbreaker.ErrOpen

	// ErrRejected: the call was shed because a bulkhead was full, a rate
	// limit or concurrency limit was exceeded, or a per-caller limit was hit.
	ErrRejected = errors.New("resilience: rejected")

	// ErrTimeout: an attempt, or the whole call, ran out of time.
	ErrTimeout = errors.New("resilience: timeout")

	// ErrBudgetExhausted: a retry or hedge was needed but the retry budget
	// was spent; the call failed with the last attempt's error.
	ErrBudgetExhausted = budget.ErrExceeded

	// ErrInvalidConfig is matched (with errors.Is) by every error about a
	// bad policy spec, Config or CallerLimits field, or caller name. The
	// concrete error is a *FieldError naming the field by its path, such
	// as "orders.retry.max_attempts".
	ErrInvalidConfig = errors.New("resilience: invalid configuration")

	// ErrPermanent is matched by every error marked with Permanent: a
	// failure no retry can fix. Executors do not retry it, and messaging
	// consumers dead-letter the message at once instead of redelivering it.
	ErrPermanent = errors.New("resilience: permanent failure")
)

// Reason says which limit rejected a call. It is carried by *Error.
type Reason string

// Reasons found in (*Error).Reason.
const (
	ReasonCircuitOpen Reason = "circuit_open"
	ReasonBulkhead    Reason = "bulkhead"
	ReasonRateLimit   Reason = "rate_limit"
	ReasonCallerLimit Reason = "caller_limit"
	ReasonLimit       Reason = "concurrency_limit"
	ReasonTimeout     Reason = "timeout"
	ReasonBudget      Reason = "budget"
)

// Error is a call that failed because of a policy rather than (only)
// because of the work itself. It matches the sentinel for its Reason with
// errors.Is and unwraps to the underlying cause (failsafe-go's error, a
// context error, or the last attempt's error).
//
// Error values are immutable once returned and safe for concurrent use.
type Error struct {
	// Policy is the name of the policy (registry key) that produced the error, if any.
	Policy string
	// Reason says which limit produced the error.
	Reason Reason
	// RetryAfter is a hint for when a new call may succeed (remaining open
	// time of a circuit, time to the next rate-limit permit); 0 if unknown.
	RetryAfter time.Duration
	// Cause is the underlying error.
	Cause error
	// Last is the error of the last attempt when the retry budget stopped a
	// retry; nil otherwise.
	Last error
}

// Error implements error.
func (e *Error) Error() string {
	msg := "resilience"
	if e.Policy != "" {
		msg += " " + e.Policy
	}
	msg += ": " + string(e.Reason)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.Last != nil {
		msg += " (last attempt: " + e.Last.Error() + ")"
	}
	return msg
}

// Is reports whether target is the sentinel for e's reason.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrRejected:
		return e.Reason == ReasonBulkhead || e.Reason == ReasonRateLimit || e.Reason == ReasonCallerLimit || e.Reason == ReasonLimit
	case ErrTimeout:
		return e.Reason == ReasonTimeout
	case ErrCircuitOpen:
		return e.Reason == ReasonCircuitOpen
	case ErrBudgetExhausted:
		return e.Reason == ReasonBudget
	}
	return false
}

// Unwrap returns the cause and, when the budget stopped a retry, the last
// attempt's error.
func (e *Error) Unwrap() []error {
	if e.Last != nil {
		return []error{e.Cause, e.Last}
	}
	return []error{e.Cause}
}

// Classify maps failsafe-go's own policy errors and context deadline errors
// to an *Error that matches this package's sentinels. Other errors, nil and
// errors that already are an *Error are returned unchanged.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	var reason Reason
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		reason = ReasonCircuitOpen
	case errors.Is(err, bulkhead.ErrFull):
		reason = ReasonBulkhead
	case errors.Is(err, ratelimiter.ErrExceeded):
		reason = ReasonRateLimit
	case errors.Is(err, adaptivelimiter.ErrExceeded):
		reason = ReasonLimit
	case errors.Is(err, timeout.ErrExceeded), errors.Is(err, context.DeadlineExceeded):
		reason = ReasonTimeout
	case errors.Is(err, budget.ErrExceeded):
		reason = ReasonBudget
	default:
		return err
	}
	return &Error{Reason: reason, Cause: err}
}

// FieldError names a bad field of a policy spec, a Config or CallerLimits
// by its yaml path (such as "overrides[orders].retry.max_attempts"), with
// the offending value and the reason. It matches ErrInvalidConfig with
// errors.Is. It is the one field-error type of the module, so errors.As
// with the FieldError of any Vitamin package finds it. It is not modified
// after it is returned, so it is safe for concurrent use.
type FieldError = fielderr.Error

// invalid returns a *FieldError behind ErrInvalidConfig.
func invalid(field string, value any, reason string) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, nil)
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Is reports whether target is ErrPermanent.
func (p *permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as not worth retrying: an executor returns it at
// once, without further attempts (it still counts as a failure for the
// circuit breaker), and a messaging consumer dead-letters the message
// instead of redelivering it. The result matches ErrPermanent and err with
// errors.Is. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err matches ErrPermanent: it, or an error it
// wraps, was marked with Permanent or says it is permanent (as an
// undecodable message does).
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
