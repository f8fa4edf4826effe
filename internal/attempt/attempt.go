package attempt

import "context"

// Key is the context key under which an attempt's context holds its
// Stall.
type Key struct{}

// Stall is an attempt that may be ended early. It is safe for concurrent
// use.
type Stall interface {
	// Stall ends the attempt as if its timeout had passed, so that the
	// policy retries it, and reports whether it did: it does nothing to an
	// attempt that has already ended.
	Stall() bool
}

// From returns the Stall of the attempt whose context is ctx (or a
// context derived from it), or nil when no retry can follow the attempt.
func From(ctx context.Context) Stall {
	s, _ := ctx.Value(Key{}).(Stall)
	return s
}
