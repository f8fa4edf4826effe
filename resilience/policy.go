package resilience

import (
	"math"
	"slices"
	"time"
)

// Policy describes how calls to one target are protected. It is plain data
// with yaml and json tags, so it can be loaded from a file, the environment
// or a config store; a nil section is switched off. The zero Policy lets
// every call through unchanged.
//
// Durations are time.Duration values: through package config, strings
// with a unit such as "250ms", or 0.
//
// The policies apply, from the outside in: retry, hedge, circuit breaker,
// rate limit, bulkhead, attempt timeout. Every attempt (first try, retry or
// hedge) therefore passes the breaker and the limits on its own.
//
// A Policy is a value; copy it freely. Validate it, or let NewExecutor and
// Registry do it. Policy and its sections are plain data, safe for
// concurrent reads but not for concurrent modification; executors copy what
// they need when built.
type Policy struct {
	// Timeout bounds each attempt with a context deadline (context.WithTimeout
	// around the attempt, no extra goroutine). 0 means no per-attempt limit:
	// the caller's own deadline still applies.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Retry re-runs failed attempts.
	Retry *Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
	// Budget caps retries and hedges together as a share of calls.
	Budget *Budget `yaml:"budget,omitempty" json:"budget,omitempty"`
	// CircuitBreaker stops calling a target that keeps failing.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker,omitempty" json:"circuit_breaker,omitempty"`
	// Bulkhead caps concurrent attempts.
	Bulkhead *Bulkhead `yaml:"bulkhead,omitempty" json:"bulkhead,omitempty"`
	// RateLimit caps the rate of attempts.
	RateLimit *RateLimit `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`
	// Hedge starts extra attempts when the first one is slow.
	Hedge *Hedge `yaml:"hedge,omitempty" json:"hedge,omitempty"`
}

// Retry describes retries with exponential backoff and jitter.
type Retry struct {
	// MaxAttempts is the total number of attempts including the first; at least 1.
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// Backoff is the delay before the first retry; 0 retries at once.
	Backoff time.Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	// MaxBackoff caps the delay; 0 means 100 × Backoff.
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// Multiplier grows the delay after each retry; 0 means 2. At least 1.
	Multiplier float64 `yaml:"multiplier,omitempty" json:"multiplier,omitempty"`
	// Jitter randomises each delay by up to this share of it, in [0,1].
	Jitter float64 `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// On lists the outcome codes that are retried (see Outcome.Code, for
	// example "timeout", "error", or a transport's codes such as "503" or
	// "UNAVAILABLE"). Empty means every outcome the classifier calls
	// retryable.
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
}

// Budget limits retries and hedges as a share of calls, so that a failing
// dependency does not receive several times its normal load: over any run
// of at least 1/Ratio calls, retries and hedges ≤ Ratio × calls. Each call
// earns Ratio of a retry and a retry or hedge spends one; a new budget is
// advanced one retry, which its first 1/Ratio calls earn back, so the very
// first failure can be retried. On top of that, at most
// max(MinConcurrency, Ratio × calls in flight) retries and hedges run at
// once, so a burst cannot spend a saved-up balance in one go, while a
// quiet service can still run MinConcurrency of them. A retry that finds
// the budget short for the moment waits for it, so that a burst of
// failures (the calls in flight to an instance that just died or froze)
// is paced rather than failed, and the bounds above still hold: up to
// MaxWait while that many retries are running, and up to 100ms (MaxWait
// if shorter) while the balance is spent but other calls in flight can
// earn it back. A call alone with a spent balance fails at once; hedges
// never wait.
type Budget struct {
	// Ratio is the share of calls that may be retried or hedged, in [0,1]; 0 means 0.2.
	Ratio float64 `yaml:"ratio,omitempty" json:"ratio,omitempty"`
	// MinConcurrency is how many retries and hedges may run at once even
	// when few calls are in flight; 0 means 3. Negative is invalid.
	MinConcurrency int `yaml:"min_concurrency,omitempty" json:"min_concurrency,omitempty"`
	// MaxBalance caps the retries a quiet period can save up; 0 means 10.
	MaxBalance int `yaml:"max_balance,omitempty" json:"max_balance,omitempty"`
	// MaxWait is how long a retry may wait, within the call's context,
	// for one of the retries and hedges running to end when as many as
	// allowed are running (see above); 0 means 1s, negative means not at
	// all (the retry fails with ErrBudgetExhausted at once).
	MaxWait time.Duration `yaml:"max_wait,omitempty" json:"max_wait,omitempty"`
}

// CircuitBreaker describes a breaker over a count window (the last
// WindowSize attempts) or a time window (the attempts of the last Window).
// Set exactly one of WindowSize and Window.
type CircuitBreaker struct {
	// WindowSize is the number of recent attempts the failure rate is computed over.
	WindowSize int `yaml:"window_size,omitempty" json:"window_size,omitempty"`
	// Window is the period the failure rate is computed over.
	Window time.Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// FailureRate opens the breaker when reached, in (0,1].
	FailureRate float64 `yaml:"failure_rate" json:"failure_rate"`
	// MinRequests is how many attempts the window must hold before the
	// rate is considered; 0 means 1. With WindowSize it is at most WindowSize.
	MinRequests int `yaml:"min_requests,omitempty" json:"min_requests,omitempty"`
	// OpenFor is how long the breaker rejects calls before it half-opens; more than 0.
	OpenFor time.Duration `yaml:"open_for" json:"open_for"`
	// HalfOpenProbes is how many trial calls must all succeed, while
	// half-open, to close the breaker; any failed probe reopens it. 0 means 1.
	HalfOpenProbes int `yaml:"half_open_probes,omitempty" json:"half_open_probes,omitempty"`
	// SlowCall, if more than 0, makes a successful attempt that took longer
	// than this count as a failure for the breaker (the caller still gets
	// its result), so a dependency that has become very slow is cut off
	// like a failing one.
	SlowCall time.Duration `yaml:"slow_call,omitempty" json:"slow_call,omitempty"`
}

// Bulkhead caps concurrent attempts.
type Bulkhead struct {
	// MaxConcurrent is the number of attempts that may run at once; at least 1.
	MaxConcurrent int `yaml:"max_concurrent" json:"max_concurrent"`
	// MaxWait is how long an attempt may wait for a slot; 0 rejects at once.
	MaxWait time.Duration `yaml:"max_wait,omitempty" json:"max_wait,omitempty"`
}

// RateLimit caps the rate of attempts. With Burst ≤ 1 permits are spread
// evenly (one every 1/Rate); with a larger Burst, up to Burst attempts may
// start in each Burst/Rate period.
type RateLimit struct {
	// Rate is the number of attempts per second; more than 0.
	Rate float64 `yaml:"rate" json:"rate"`
	// Burst is how many attempts may start back to back; 0 means 1.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
	// MaxWait is how long an attempt may wait for a permit; 0 rejects at once.
	MaxWait time.Duration `yaml:"max_wait,omitempty" json:"max_wait,omitempty"`
}

// Hedge starts another attempt when the current ones are slow, and takes
// the first successful or non-retryable result; the other attempts are
// cancelled. Hedges spend the same Budget as retries, and a Retry retries
// the whole hedged group. Set exactly one of Delay and Quantile.
type Hedge struct {
	// Delay is how long to wait for an attempt before starting a hedge.
	Delay time.Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
	// Quantile hedges an attempt that takes longer than this quantile of
	// recent successful attempts (the last 64), in (0,1), such as 0.95.
	// Nothing is hedged until 20 attempts have succeeded.
	Quantile float64 `yaml:"quantile,omitempty" json:"quantile,omitempty"`
	// MaxHedges is how many extra attempts may start; 0 means 1.
	MaxHedges int `yaml:"max_hedges,omitempty" json:"max_hedges,omitempty"`
}

// Validate reports the first invalid field of p as a *FieldError, naming
// the field by its yaml path (for example "retry.max_attempts").
func (p Policy) Validate() error { return p.validate("") }

func (p Policy) validate(prefix string) error {
	v := validator{prefix: prefix}
	v.nonNegative("timeout", p.Timeout)
	if r := p.Retry; r != nil {
		if r.MaxAttempts < 1 {
			v.fail("retry.max_attempts", r.MaxAttempts, "must be at least 1")
		}
		v.nonNegative("retry.backoff", r.Backoff)
		v.nonNegative("retry.max_backoff", r.MaxBackoff)
		if r.MaxBackoff > 0 && r.MaxBackoff < r.Backoff {
			v.fail("retry.max_backoff", r.MaxBackoff, "must not be less than retry.backoff")
		}
		if r.Multiplier != 0 && (r.Multiplier < 1 || math.IsNaN(r.Multiplier) || math.IsInf(r.Multiplier, 0)) {
			v.fail("retry.multiplier", r.Multiplier, "must be at least 1")
		}
		v.ratio("retry.jitter", r.Jitter)
		if i := slices.Index(r.On, ""); i >= 0 {
			v.fail("retry.on", r.On, "must not contain an empty code")
		}
	}
	if b := p.Budget; b != nil {
		v.ratio("budget.ratio", b.Ratio)
		if b.MinConcurrency < 0 {
			v.fail("budget.min_concurrency", b.MinConcurrency, "must not be negative")
		}
		if b.MaxBalance < 0 {
			v.fail("budget.max_balance", b.MaxBalance, "must not be negative")
		}
	}
	if cb := p.CircuitBreaker; cb != nil {
		switch {
		case cb.WindowSize < 0:
			v.fail("circuit_breaker.window_size", cb.WindowSize, "must not be negative")
		case cb.Window < 0:
			v.fail("circuit_breaker.window", cb.Window, "must not be negative")
		case cb.WindowSize == 0 && cb.Window == 0:
			v.fail("circuit_breaker.window_size", cb.WindowSize, "set window_size (count window) or window (time window)")
		case cb.WindowSize > 0 && cb.Window > 0:
			v.fail("circuit_breaker.window", cb.Window, "set only one of window_size and window")
		}
		if !(cb.FailureRate > 0 && cb.FailureRate <= 1) {
			v.fail("circuit_breaker.failure_rate", cb.FailureRate, "must be in (0,1]")
		}
		if cb.MinRequests < 0 {
			v.fail("circuit_breaker.min_requests", cb.MinRequests, "must not be negative")
		} else if cb.WindowSize > 0 && cb.MinRequests > cb.WindowSize {
			v.fail("circuit_breaker.min_requests", cb.MinRequests, "must not exceed window_size")
		}
		if cb.OpenFor <= 0 {
			v.fail("circuit_breaker.open_for", cb.OpenFor, "must be more than 0")
		}
		v.nonNegative("circuit_breaker.slow_call", cb.SlowCall)
		if cb.HalfOpenProbes < 0 {
			v.fail("circuit_breaker.half_open_probes", cb.HalfOpenProbes, "must not be negative")
		}
	}
	if b := p.Bulkhead; b != nil {
		if b.MaxConcurrent < 1 {
			v.fail("bulkhead.max_concurrent", b.MaxConcurrent, "must be at least 1")
		}
		v.nonNegative("bulkhead.max_wait", b.MaxWait)
	}
	if r := p.RateLimit; r != nil {
		if !(r.Rate > 0) || math.IsInf(r.Rate, 0) {
			v.fail("rate_limit.rate", r.Rate, "must be more than 0")
		} else if time.Duration(float64(time.Second)/r.Rate) <= 0 {
			v.fail("rate_limit.rate", r.Rate, "must be at most 1e9 per second")
		}
		if r.Burst < 0 {
			v.fail("rate_limit.burst", r.Burst, "must not be negative")
		}
		v.nonNegative("rate_limit.max_wait", r.MaxWait)
	}
	if h := p.Hedge; h != nil {
		v.nonNegative("hedge.delay", h.Delay)
		switch {
		case h.Quantile != 0 && !(h.Quantile > 0 && h.Quantile < 1):
			v.fail("hedge.quantile", h.Quantile, "must be in (0,1)")
		case h.Quantile != 0 && h.Delay != 0:
			v.fail("hedge.delay", h.Delay, "set only one of delay and quantile")
		case h.Quantile == 0 && h.Delay == 0:
			v.fail("hedge.delay", h.Delay, "set delay or quantile")
		}
		if h.MaxHedges < 0 {
			v.fail("hedge.max_hedges", h.MaxHedges, "must not be negative")
		}
	}
	return v.err
}

type validator struct {
	prefix string
	err    error
}

func (v *validator) fail(field string, value any, reason string) {
	if v.err == nil {
		v.err = invalid(v.prefix+field, value, reason)
	}
}

func (v *validator) nonNegative(field string, d time.Duration) {
	if d < 0 {
		v.fail(field, d, "must not be negative")
	}
}

func (v *validator) ratio(field string, f float64) {
	if !(f >= 0 && f <= 1) {
		v.fail(field, f, "must be in [0,1]")
	}
}

// equal reports whether two optional sections hold the same spec.
func equalSpec[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
