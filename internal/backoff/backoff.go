package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential schedule with jitter. The zero value waits 0.
// It is a value, safe for concurrent use.
type Backoff struct {
	// Initial is the wait after the first failure.
	Initial time.Duration
	// Max caps the wait; it doubles until it gets there.
	Max time.Duration
	// NoJitter makes Delay return the exact exponential wait, for callers
	// that must be deterministic.
	NoJitter bool
}

// Delay returns the wait after the n-th failure in a row (1-based; n < 1
// counts as 1): Initial × 2^(n-1), capped at Max, then jittered to between
// half and all of it.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial << min(max(n-1, 0), 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	if d < 2 || b.NoJitter {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d or until ctx is done, and reports whether it waited the
// whole time.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
