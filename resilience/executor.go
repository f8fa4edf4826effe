package resilience

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Outcome is how a failed attempt counts. It is a plain value.
type Outcome struct {
	// Code names the outcome; Retry.On lists codes. The default classifier
	// uses "timeout", "canceled", "rejected", "circuit_open", "permanent"
	// and "error"; transport adapters add theirs ("503", "UNAVAILABLE").
	Code string
	// Failure makes the attempt count as a failure for the circuit breaker.
	Failure bool
	// Retryable makes the attempt retried when Retry.On is empty.
	Retryable bool
	// Timeout says the attempt ran out of time, even if the transport
	// noticed before the attempt's own context did (a server answering
	// DEADLINE_EXCEEDED as the shared deadline passes).
	Timeout bool
}

// Classifier says how a non-nil attempt error counts. It must be safe for
// concurrent use and should be fast: it runs for every failed attempt.
type Classifier func(err error) Outcome

// WithOutcome returns err annotated with the outcome DefaultClassifier
// reports for it; errors.Is and errors.As see through the annotation.
// Transport adapters use it to classify status codes. WithOutcome(nil, o) is nil.
func WithOutcome(err error, o Outcome) error {
	if err == nil {
		return nil
	}
	return &outcomeError{err: err, o: o}
}

type outcomeError struct {
	err error
	o   Outcome
}

func (e *outcomeError) Error() string { return e.err.Error() }
func (e *outcomeError) Unwrap() error { return e.err }

// OutcomeOf returns the outcome WithOutcome attached to err or to an error
// it wraps (the outermost one), and whether there was one.
func OutcomeOf(err error) (Outcome, bool) {
	var oe *outcomeError
	if errors.As(err, &oe) {
		return oe.o, true
	}
	return Outcome{}, false
}

// StripOutcome removes the annotation WithOutcome added, if err carries one
// at its top.
func StripOutcome(err error) error {
	if oe, ok := err.(*outcomeError); ok {
		return oe.err
	}
	return err
}

// DefaultClassifier classifies errors annotated by WithOutcome as
// annotated; Permanent errors as "permanent" (a failure, never retried);
// rejections and open circuits as "rejected" and "circuit_open" (neither a
// failure nor retried); caller cancellation as "canceled" (neither);
// timeouts as "timeout" (a retryable failure); anything else as "error" (a
// retryable failure).
func DefaultClassifier(err error) Outcome {
	if o, ok := OutcomeOf(err); ok {
		return o
	}
	if IsPermanent(err) {
		return Outcome{Code: "permanent", Failure: true}
	}
	var re *Error
	if errors.As(err, &re) {
		switch re.Reason {
		case ReasonTimeout:
			return Outcome{Code: "timeout", Failure: true, Retryable: true, Timeout: true}
		case ReasonCircuitOpen:
			return Outcome{Code: "circuit_open"}
		case ReasonBudget:
			return Outcome{Code: "budget_exhausted"}
		default:
			return Outcome{Code: "rejected"}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Outcome{Code: "canceled"}
	case errors.Is(err, context.DeadlineExceeded):
		return Outcome{Code: "timeout", Failure: true, Retryable: true, Timeout: true}
	}
	return Outcome{Code: "error", Failure: true, Retryable: true}
}

func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

// parts are the stateful pieces of an executor. A piece whose spec did not
// change is carried over to the executor that replaces it.
type parts struct {
	breaker  circuitbreaker.CircuitBreaker[any]
	bulkhead bulkhead.Bulkhead[any]
	limiter  ratelimiter.RateLimiter[any]
	budget   *retryBudget
	latency  *latencies
	obs      *observer
}

// Executor runs calls under one Policy. Build it with NewExecutor or get it
// from a Registry.
//
// Executor is safe for concurrent use.
type Executor struct {
	name     string
	spec     Policy
	classify Classifier
	obs      *observer
	parts    parts

	timeout      time.Duration
	limiterWait  time.Duration
	bulkheadWait time.Duration
	retryAfter   time.Duration // rate-limit hint
	slowCall     time.Duration
	retryOn      []string
	hedged       bool
	hedgeDelay   time.Duration // with Hedge.Delay
	maxHedges    int
	latency      *latencies             // with Hedge.Quantile
	hedges       *timerList             // starts hedges
	deadlines    *timerList             // ends attempts that time out
	closed       chan struct{}          // closed; see attemptCtx.end
	canceled     context.Context        // ended by its cancel; see attemptCtx.Value
	expired      context.Context        // ended by its deadline; see attemptCtx.Value
	fs           failsafe.Executor[any] // retry; nil without it
	maxAttempts  int                    // with a retry
}

// NewExecutor validates p and builds an executor for it. name labels its
// logs, metrics and Snapshot.
func NewExecutor(name string, p Policy, opts ...Option) (*Executor, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	return newExecutor(name, p, &o, newInstruments(o.meter), nil), nil
}

// newExecutor builds an executor for a validated spec, reusing the pieces of
// prev whose spec is unchanged.
func newExecutor(name string, p Policy, o *options, inst *instruments, prev *Executor) *Executor {
	e := &Executor{name: name, spec: p, classify: o.classifier, timeout: p.Timeout}
	var old parts
	if prev != nil {
		old = prev.parts
	}
	e.obs = old.obs
	if e.obs == nil {
		e.obs = newObserver(name, o, inst, &counters{})
	}
	e.parts.obs = e.obs

	if cb := p.CircuitBreaker; cb != nil {
		e.slowCall = cb.SlowCall
		if prev != nil && equalSpec(prev.spec.CircuitBreaker, cb) {
			e.parts.breaker = old.breaker
		} else {
			e.parts.breaker = buildBreaker(*cb, e.obs)
		}
	}
	if b := p.Bulkhead; b != nil {
		if prev != nil && equalSpec(prev.spec.Bulkhead, b) {
			e.parts.bulkhead = old.bulkhead
		} else {
			e.parts.bulkhead = bulkhead.New[any](uint(b.MaxConcurrent))
		}
		e.bulkheadWait = b.MaxWait
	}
	if r := p.RateLimit; r != nil {
		if prev != nil && equalSpec(prev.spec.RateLimit, r) {
			e.parts.limiter = old.limiter
		} else {
			e.parts.limiter = buildLimiter(*r)
		}
		e.limiterWait = r.MaxWait
		e.retryAfter = time.Duration(float64(time.Second) / r.Rate)
	}
	if (p.Retry != nil || p.Hedge != nil) && p.Budget != nil {
		if prev != nil && old.budget != nil && equalSpec(prev.spec.Budget, p.Budget) {
			e.parts.budget = old.budget
		} else {
			e.parts.budget = newRetryBudget(*p.Budget, e.obs.budgetExhausted)
		}
	}

	if e.timeout > 0 || p.Hedge != nil || p.Retry != nil {
		// Attempts run in an attemptCtx (with a timeout or a hedge, or
		// with a retry and a deadline), whose deadline is kept by one
		// timer list per executor instead of a runtime timer per attempt.
		if e.timeout > 0 {
			e.deadlines = newTimerList()
		}
		e.closed = make(chan struct{})
		close(e.closed)
		e.canceled, e.expired = endedContexts()
	}
	if r := p.Retry; r != nil && r.MaxAttempts > 1 {
		e.retryOn = slices.Clone(r.On)
		e.fs = failsafe.With(e.buildRetry(*r))
		e.maxAttempts = r.MaxAttempts
	}
	if h := p.Hedge; h != nil {
		e.hedged = true
		e.hedges = newTimerList()
		e.hedgeDelay = h.Delay
		e.maxHedges = max(h.MaxHedges, 1)
		if h.Quantile > 0 {
			if prev != nil && old.latency != nil && equalSpec(prev.spec.Hedge, h) {
				e.parts.latency = old.latency
			} else {
				e.parts.latency = newLatencies(h.Quantile)
			}
			e.latency = e.parts.latency
		}
	}
	return e
}

// endedContexts returns a context cancelled by its cancel function and one
// whose deadline has passed, both made by the context package from
// context.Background, so that they carry no value of anybody else.
func endedContexts() (canceled, expired context.Context) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel = context.WithDeadline(context.Background(), time.Time{})
	cancel() // it has already ended: this keeps its error and cause
	return canceled, expired
}

// ownEnd returns the context of endedContexts that ended with err, the
// error of an attempt context that ended by itself.
func (e *Executor) ownEnd(err error) context.Context {
	if err == context.DeadlineExceeded {
		return e.expired
	}
	return e.canceled
}

func buildBreaker(cb CircuitBreaker, obs *observer) circuitbreaker.CircuitBreaker[any] {
	probes := uint(max(cb.HalfOpenProbes, 1))
	minReq := uint(max(cb.MinRequests, 1))
	b := circuitbreaker.NewBuilder[any]().
		WithDelay(cb.OpenFor).
		WithSuccessThreshold(probes).
		OnStateChanged(obs.stateChanged)
	if cb.WindowSize > 0 {
		size := uint(cb.WindowSize)
		threshold := uint(math.Ceil(cb.FailureRate * float64(size)))
		b = b.WithFailureThresholdRatio(max(threshold, 1), size).
			WithFailureRateThreshold(cb.FailureRate, minReq, 0)
	} else {
		b = b.WithFailureRateThreshold(cb.FailureRate, minReq, cb.Window)
	}
	return b.Build()
}

func buildLimiter(r RateLimit) ratelimiter.RateLimiter[any] {
	if r.Burst <= 1 {
		return ratelimiter.NewSmoothWithMaxRate[any](time.Duration(float64(time.Second) / r.Rate))
	}
	period := time.Duration(float64(r.Burst) / r.Rate * float64(time.Second))
	return ratelimiter.NewBursty[any](uint(r.Burst), period)
}

func (e *Executor) buildRetry(r Retry) failsafe.Policy[any] {
	b := retrypolicy.NewBuilder[any]().
		WithMaxAttempts(r.MaxAttempts).
		ReturnLastFailure().
		HandleIf(func(_ any, err error) bool { return err != nil && e.shouldRetry(err) })
	if r.Backoff > 0 {
		maxBackoff := r.MaxBackoff
		if maxBackoff == 0 {
			maxBackoff = 100 * r.Backoff
		}
		mult := r.Multiplier
		if mult == 0 {
			mult = 2
		}
		if maxBackoff > r.Backoff {
			b = b.WithBackoffFactor(r.Backoff, maxBackoff, mult)
		} else {
			b = b.WithDelay(r.Backoff)
		}
		if r.Jitter > 0 {
			b = b.WithJitterFactor(r.Jitter)
		}
	}
	if e.parts.budget != nil {
		// execute takes the budget's permits; a refusal ends the retries.
		b = b.AbortOnErrors(ErrBudgetExhausted)
	}
	return b.Build()
}

func (e *Executor) shouldRetry(err error) bool {
	o := e.classify(err)
	if o.Code == "permanent" || IsPermanent(err) {
		return false
	}
	if len(e.retryOn) > 0 {
		return slices.Contains(e.retryOn, o.Code)
	}
	return o.Retryable
}

// Name returns the policy's name.
func (e *Executor) Name() string { return e.name }

// Policy returns the spec e was built from.
func (e *Executor) Policy() Policy { return e.spec }

// Permit is one attempt admitted by an executor's circuit breaker, rate
// limit and bulkhead. Call Done exactly once when the attempt is over.
// Transport adapters use permits for work they cannot wrap in a function,
// such as a stream or a server handler.
//
// A Permit must not be used from several goroutines at once.
type Permit struct {
	e     *Executor
	start time.Time // set only when slow calls are tracked
}

// Acquire admits one attempt, or returns an *Error matching ErrCircuitOpen
// or ErrRejected. It waits up to the policy's MaxWait for a rate-limit or
// bulkhead permit, or until ctx is done. Acquire does not retry, hedge or
// apply the timeout.
func (e *Executor) Acquire(ctx context.Context) (Permit, error) {
	p := e.parts
	if p.limiter != nil {
		var ok bool
		if e.limiterWait > 0 {
			ok = p.limiter.AcquirePermitWithMaxWait(ctx, e.limiterWait) == nil
		} else {
			ok = p.limiter.TryAcquirePermit()
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return Permit{}, err
			}
			return Permit{}, e.reject(ctx, ReasonRateLimit, ratelimiter.ErrExceeded, e.retryAfter)
		}
	}
	if p.bulkhead != nil {
		var ok bool
		if e.bulkheadWait > 0 {
			ok = p.bulkhead.AcquirePermitWithMaxWait(ctx, e.bulkheadWait) == nil
		} else {
			ok = p.bulkhead.TryAcquirePermit()
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return Permit{}, err
			}
			return Permit{}, e.reject(ctx, ReasonBulkhead, bulkhead.ErrFull, 0)
		}
	}
	if p.breaker != nil && !p.breaker.TryAcquirePermit() {
		if p.bulkhead != nil {
			p.bulkhead.ReleasePermit()
		}
		return Permit{}, e.reject(ctx, ReasonCircuitOpen, circuitbreaker.ErrOpen, p.breaker.RemainingDelay())
	}
	if e.slowCall > 0 {
		return Permit{e: e, start: time.Now()}, nil
	}
	return Permit{e: e}, nil
}

func (e *Executor) reject(ctx context.Context, reason Reason, cause error, retryAfter time.Duration) error {
	e.obs.rejected(ctx, reason)
	return &Error{Policy: e.name, Reason: reason, Cause: cause, RetryAfter: retryAfter}
}

// Done records the attempt's outcome in the circuit breaker and releases
// its bulkhead slot. err is the attempt's error, nil on success.
func (p Permit) Done(err error) {
	if p.e == nil {
		return
	}
	parts := p.e.parts
	if parts.breaker != nil {
		if (err != nil && p.e.classify(err).Failure) ||
			(err == nil && p.e.slowCall > 0 && time.Since(p.start) > p.e.slowCall) {
			parts.breaker.RecordFailure()
		} else {
			parts.breaker.RecordSuccess()
		}
	}
	if parts.bulkhead != nil {
		parts.bulkhead.ReleasePermit()
	}
}

// attempt runs attempt n (from 1) of fn. The attempt's context carries
// the policy's timeout, and when a retry can follow it, an attempt.Stall
// by which the transport may end it early as timed out (see
// attemptCtx.Stall); fn receives its cancel function and must call it (now
// or later, for example when a response body is closed) if it returns a nil
// error; on error attempt calls it.
func attempt[T any](ctx context.Context, e *Executor, fn attemptFunc[T], n int) (T, error) {
	permit, err := e.Acquire(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	actx, cancel := ctx, context.CancelFunc(noop)
	var a *attemptCtx
	retry := n < e.maxAttempts
	if e.timeout > 0 || retry && hasDeadline(ctx) {
		a = new(attemptCtx)
		a.retry = retry
		cancel = a.start(e, ctx, time.Now())
		actx = a
	}
	v, err := fn.attempt(actx, cancel)
	if err != nil {
		err = e.attemptError(ctx, a, err)
		cancel()
	}
	permit.Done(err)
	return v, err
}

func hasDeadline(ctx context.Context) bool {
	_, ok := ctx.Deadline()
	return ok
}

// attemptError turns a failed attempt's error into an *Error matching
// ErrTimeout if the attempt ran out of its own time (not the caller's) or
// was stalled.
func (e *Executor) attemptError(ctx context.Context, a *attemptCtx, err error) error {
	if a == nil || ctx.Err() != nil {
		return err
	}
	if a.stalled.Load() || e.timeout > 0 && (errors.Is(a.Err(), context.DeadlineExceeded) || e.classify(err).Timeout) {
		return &Error{Policy: e.name, Reason: ReasonTimeout, Cause: err}
	}
	return err
}

func noop() {}

// execute runs fn under the whole policy.
//
// The first attempt (or hedged group, see hedge.go) runs directly on the
// caller's goroutine, so a call that succeeds at once costs no failsafe-go
// execution. Only when it fails with a retryable error does failsafe-go's
// retry policy take over: the first result is replayed to it, and it
// applies backoff, jitter and the attempt limit to the rest, each retry
// being again an attempt or a hedged group that first takes a permit from
// the budget (which may wait for a running retry to end, see
// retryBudget.acquire).
func execute[T any](ctx context.Context, e *Executor, fn attemptFunc[T]) (T, error) {
	if e.fs == nil && !e.hedged {
		v, err := attempt(ctx, e, fn, 1)
		return v, e.finish(ctx, err, nil)
	}
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, e.finish(ctx, err, nil)
	}
	if b := e.parts.budget; b != nil {
		b.RecordExecution()
		defer b.ReleaseExecution()
	}
	v, err := once(ctx, e, fn, 1)
	if err == nil || e.fs == nil || !e.shouldRetry(err) {
		return v, e.finish(ctx, err, nil)
	}
	first, last, lastV, attempts := true, err, v, 1
	r, err := e.fs.WithContext(ctx).Get(func() (any, error) {
		if first {
			first = false
			return v, last
		}
		if b := e.parts.budget; b != nil {
			if err := b.acquire(ctx); err != nil {
				return nil, err // last stays the last attempt's error
			}
			defer b.ReleasePermit()
		}
		e.obs.retried(attempts, last)
		attempts++
		v, err := once(ctx, e, fn, attempts)
		last, lastV = err, v
		return v, err
	})
	if r == nil && errors.Is(err, ErrBudgetExhausted) {
		// The budget refused a retry: hand back the last attempt's result
		// (an HTTP response, say) together with the error.
		return lastV, e.finish(ctx, err, last)
	}
	v, _ = r.(T)
	return v, e.finish(ctx, err, last)
}

// finish turns the error leaving failsafe-go into this package's errors and
// records the call's outcome.
func (e *Executor) finish(ctx context.Context, err, last error) error {
	if err == nil {
		e.obs.callDone(ctx, "success")
		return nil
	}
	var re *Error
	switch {
	case errors.As(err, &re):
	case errors.Is(err, ErrBudgetExhausted):
		err = &Error{Policy: e.name, Reason: ReasonBudget, Cause: err, Last: last}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		err = &Error{Policy: e.name, Reason: ReasonTimeout, Cause: err}
	}
	e.obs.callDone(ctx, outcomeOf(err))
	return err
}

// Run calls fn under the policy: fn may run several times (retries) or
// concurrently (hedges), each time with its own attempt context. It returns
// nil on success, or the last attempt's error, or an *Error matching
// ErrCircuitOpen, ErrRejected, ErrTimeout or ErrBudgetExhausted.
func (e *Executor) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := execute[struct{}](ctx, e, runFunc(fn))
	return err
}

// RunWithFallback is Run, then, if the call failed for any reason, the
// result of fallback, which receives the cause. Tell the causes apart with
// errors.Is: ErrCircuitOpen, ErrRejected, ErrTimeout, ErrBudgetExhausted,
// context.Canceled, or anything else for a plain failure.
func (e *Executor) RunWithFallback(ctx context.Context, fn func(ctx context.Context) error, fallback func(ctx context.Context, cause error) error) error {
	err := e.Run(ctx, fn)
	if err == nil || fallback == nil {
		return err
	}
	e.obs.fellBack(ctx, err)
	return fallback(ctx, err)
}

// Get is Run for a function with a result.
func Get[T any](ctx context.Context, e *Executor, fn func(ctx context.Context) (T, error)) (T, error) {
	return execute[T](ctx, e, getFunc[T](fn))
}

// GetWithFallback is Get, then, if the call failed for any reason, the
// result of fallback, which receives the cause (see RunWithFallback).
func GetWithFallback[T any](ctx context.Context, e *Executor, fn func(ctx context.Context) (T, error), fallback func(ctx context.Context, cause error) (T, error)) (T, error) {
	v, err := Get(ctx, e, fn)
	if err == nil || fallback == nil {
		return v, err
	}
	e.obs.fellBack(ctx, err)
	return fallback(ctx, err)
}

// GetDetached is Get for results that outlive the attempt, such as an HTTP
// response whose body is read later. fn receives the attempt context's
// cancel function and, when it returns a nil error, takes charge of calling
// it once the result is no longer in use. Transport adapters use it.
//
// With hedging, only the winner's cancel is left to fn's result: the
// executor calls every losing attempt's cancel, also when a loser succeeded
// after the winner, and drops that result. For an HTTP response, cancelling
// its context aborts the body and frees the connection, so a late loser
// does not leak; other results must likewise release what they hold when
// their context is cancelled.
func GetDetached[T any](ctx context.Context, e *Executor, fn func(ctx context.Context, cancel context.CancelFunc) (T, error)) (T, error) {
	return execute[T](ctx, e, detachedFunc[T](fn))
}
