package resilience

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Hedging, without a goroutine for the first attempt.
//
// A hedged group runs its first attempt on the caller's goroutine, in an
// attempt context of its own derived from the caller's. The executor's
// hedge timer list (one time.AfterFunc timer for all its groups) starts
// each hedge after the hedge delay, on the timer's goroutine;
// a hedge first takes a budget permit, then passes the breaker, rate limit
// and bulkhead like any attempt. The first successful or non-retryable
// result wins: the other attempts' contexts are cancelled (fn is expected to
// honour its context, as gRPC and net/http do) and their results dropped.
// When every attempt started has failed with a retryable error, the group
// fails with the last of them, and the retry policy, if any, takes over.
// The winner's attempt context is left alone, so a result that outlives the
// attempt (GetDetached) stays usable until its owner calls cancel.
//
// The attempts' contexts are attemptCtx values, whose timeouts are kept by
// the executor's deadline timer list rather than by context.WithTimeout,
// so that a hedged call that succeeds at once adds and stops no runtime
// timer and allocates nothing for its context.

const (
	latencyRing   = 64 // recent successful attempts a Quantile delay is computed from
	latencyWarmUp = 20 // successful attempts before the first Quantile-based hedge
	latencyEvery  = 16 // successful attempts between two computations of the delay
)

// latencies keeps the durations of recent successful attempts, for
// Hedge.Quantile, and the hedge delay computed from them.
//
// It is safe for concurrent use and lock-free: writers overwrite slots of a
// ring, and every latencyEvery-th writer recomputes the delay from a copy.
// A reader racing a writer may see an older duration in a slot, which does
// not matter for an estimate.
type latencies struct {
	q     float64
	n     atomic.Uint64
	delay atomic.Int64 // nanoseconds; -1 while warming up
	ring  [latencyRing]atomic.Int64
}

func newLatencies(q float64) *latencies {
	l := &latencies{q: q}
	l.delay.Store(-1)
	return l
}

// current returns the hedge delay, or -1 while warming up.
func (l *latencies) current() time.Duration { return time.Duration(l.delay.Load()) }

func (l *latencies) record(d time.Duration) {
	n := l.n.Add(1)
	l.ring[(n-1)%latencyRing].Store(int64(d))
	if n == latencyWarmUp || (n > latencyWarmUp && n%latencyEvery == 0) {
		l.recompute(min(n, latencyRing))
	}
}

func (l *latencies) recompute(n uint64) {
	var buf [latencyRing]int64
	s := buf[:n]
	for i := range s {
		s[i] = l.ring[i].Load()
	}
	slices.Sort(s)
	i := min(max(int(math.Ceil(l.q*float64(n)))-1, 0), len(s)-1)
	l.delay.Store(s[i])
}

// attemptFunc is one attempt of a call: it receives the attempt's context
// and cancel function, and must call cancel (now or later) when it returns
// a nil error. It is an interface so that the function types below, which
// are pointer-shaped, become one without an allocation: a closure adapting
// Run's or Get's function would cost one per call.
type attemptFunc[T any] interface {
	attempt(context.Context, context.CancelFunc) (T, error)
}

// detachedFunc is GetDetached's function: it cancels by itself.
type detachedFunc[T any] func(context.Context, context.CancelFunc) (T, error)

func (f detachedFunc[T]) attempt(ctx context.Context, cancel context.CancelFunc) (T, error) {
	return f(ctx, cancel)
}

// getFunc is Get's function: its attempt is over when it returns.
type getFunc[T any] func(context.Context) (T, error)

func (f getFunc[T]) attempt(ctx context.Context, cancel context.CancelFunc) (T, error) {
	v, err := f(ctx)
	cancel()
	return v, err
}

// runFunc is Run's function: its attempt is over when it returns.
type runFunc func(context.Context) error

func (f runFunc) attempt(ctx context.Context, cancel context.CancelFunc) (struct{}, error) {
	err := f(ctx)
	cancel()
	return struct{}{}, err
}

// once runs attempt n (from 1) of a call, or one hedged group if the
// policy hedges.
func once[T any](ctx context.Context, e *Executor, fn attemptFunc[T], n int) (T, error) {
	if e.hedged {
		return hedged(ctx, e, fn, n)
	}
	return attempt(ctx, e, fn, n)
}

// hedged runs a hedged group of attempts and returns the winner's result.
func hedged[T any](ctx context.Context, e *Executor, fn attemptFunc[T], n int) (T, error) {
	delay := e.hedgeDelay
	if e.latency != nil {
		delay = e.latency.current()
		if delay < 0 { // warming up: no hedge, but learn the latency
			start := time.Now()
			v, err := attempt(ctx, e, fn, n)
			if err == nil {
				e.latency.record(time.Since(start))
			}
			return v, err
		}
	}
	g := &hedgeGroup[T]{e: e, ctx: ctx, fn: fn, delay: delay, running: 1}
	now := time.Now()
	actx := &g.actx
	cancel := actx.start(e, ctx, now)
	permit, err := e.Acquire(actx)
	if err != nil {
		cancel()
		var zero T
		return zero, err
	}
	if e.limiterWait > 0 || e.bulkheadWait > 0 {
		now = time.Now() // the delay runs from the attempt's admission
	}
	g.cancel0 = cancel
	g.entry.owner = g
	e.hedges.add(&g.entry, now, delay)
	if done := g.run(0, actx, cancel, permit); done != nil {
		<-done // a hedge is still in flight
	}
	return g.v, g.err
}

// hedgeGroup is one hedged group of attempts: the first on the caller's
// goroutine, each hedge on the goroutine of the hedge timer that started
// it. Its fields after mu are guarded by mu; v and err may be read without
// it once the group is decided.
type hedgeGroup[T any] struct {
	e       *Executor
	ctx     context.Context // the call's (or the retry's) context
	fn      attemptFunc[T]
	delay   time.Duration
	cancel0 context.CancelFunc // the first attempt's
	actx    attemptCtx         // the first attempt's context
	entry   timerEntry         // in e.hedges

	mu      sync.Mutex
	cancels []context.CancelFunc // hedge i's is cancels[i-1]
	hedges  int                  // hedges started or being admitted
	running int                  // attempts in flight, counting hedges being admitted
	decided bool
	done    chan struct{} // made with the first hedge; closed when decided
	v       T             // the winner's result, or the last failure's
	err     error
}

// expire starts the next hedge. The executor's hedge timer list calls it,
// and the hedge runs on the calling goroutine.
func (g *hedgeGroup[T]) expire() {
	e := g.e
	g.mu.Lock()
	if g.decided {
		g.mu.Unlock()
		return
	}
	g.hedges++
	i := g.hedges
	now := time.Now()
	actx := new(attemptCtx)
	cancel := actx.start(e, g.ctx, now)
	g.cancels = append(g.cancels, cancel)
	g.running++
	if g.done == nil {
		g.done = make(chan struct{})
	}
	g.mu.Unlock()

	b := e.parts.budget
	if b != nil && !b.TryAcquirePermit() {
		b.exceeded("hedge")
		g.abandon(cancel)
		return
	}
	permit, err := e.Acquire(actx)
	if err != nil { // rejected (or the call is over): this hedge does not start
		if b != nil {
			b.ReleasePermit()
		}
		g.abandon(cancel)
		return
	}
	e.obs.hedged()
	if i < e.maxHedges {
		g.mu.Lock()
		if !g.decided {
			e.hedges.add(&g.entry, now, g.delay)
		}
		g.mu.Unlock()
	}
	g.run(i, actx, cancel, permit)
	if b != nil {
		b.ReleasePermit()
	}
}

// run runs attempt i, admitted by permit, and delivers its result. Unless
// the group is decided when it returns, it returns the channel that will be
// closed when it is.
func (g *hedgeGroup[T]) run(i int, actx *attemptCtx, cancel context.CancelFunc, permit Permit) chan struct{} {
	e := g.e
	var start time.Time
	if e.latency != nil {
		start = time.Now()
	}
	v, err := g.fn.attempt(actx, cancel)
	if err != nil {
		err = e.attemptError(g.ctx, actx, err)
		cancel()
	} else if e.latency != nil {
		e.latency.record(time.Since(start))
	}
	permit.Done(err)

	final := err == nil || !e.shouldRetry(err)
	g.mu.Lock()
	g.running--
	switch {
	case g.decided:
		// Lost: drop the result. Its context was cancelled when the group
		// was decided; cancel again in case fn kept it for a detached result.
		g.mu.Unlock()
		cancel()
		return nil
	case !final && g.running > 0:
		g.v, g.err = v, err // the last failure, unless another attempt wins
		done := g.done
		g.mu.Unlock()
		return done
	default:
		g.decide(i, v, err)
		return nil
	}
}

// abandon gives up a hedge that did not start.
func (g *hedgeGroup[T]) abandon(cancel context.CancelFunc) {
	cancel()
	g.mu.Lock()
	g.running--
	if g.decided || g.running > 0 {
		g.mu.Unlock()
		return
	}
	// Every attempt that ran has failed: the group fails with the last.
	g.decide(-1, g.v, g.err)
}

// decide ends the group with attempt i's result (i = -1: none won) and
// cancels every other attempt. It is called with mu held and releases it.
func (g *hedgeGroup[T]) decide(i int, v T, err error) {
	g.decided, g.v, g.err = true, v, err
	g.e.hedges.remove(&g.entry)
	done := g.done
	g.mu.Unlock()
	// No hedge registers once decided is set, so cancels is stable.
	if i != 0 {
		g.cancel0()
	}
	for j, cancel := range g.cancels {
		if j+1 != i {
			cancel()
		}
	}
	if done != nil {
		close(done)
	}
}
