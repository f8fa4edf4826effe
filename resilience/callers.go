package resilience

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
)

// CallerHeader is the HTTP header that names the calling service. The
// Vitamin HTTP client sends it on every request; servers key per-caller
// limits by it. CallerMetadataKey is the same for gRPC metadata: a call
// may carry it to name its caller explicitly, and it then takes precedence
// over the caller named in the user agent (see CallerUserAgent).
const (
	CallerHeader      = "Vitamin-Caller"
	CallerMetadataKey = "vitamin-caller"
)

// callerToken starts the user agent product token that names the caller.
const callerToken = CallerMetadataKey + "/"

// CallerUserAgent returns the user agent product token that names the
// calling service: "vitamin-caller/" + name. The Vitamin gRPC client puts
// it in front of its connection's user agent, which gRPC sends with every
// call and HPACK reduces to an index after the first: the identity is
// constant per connection, so it costs nothing per call, where a metadata
// entry would be encoded, decoded and stored on both sides of each one.
func CallerUserAgent(name string) string { return callerToken + name }

// CallerFromUserAgent returns the caller named by a CallerUserAgent token
// in the user agent ua, or "" if there is none.
func CallerFromUserAgent(ua string) string {
	for ua != "" {
		var tok string
		tok, ua, _ = strings.Cut(ua, " ")
		if name, ok := strings.CutPrefix(tok, callerToken); ok {
			return name
		}
	}
	return ""
}

// ValidateCaller reports what is wrong with name as a caller identity: it
// must be 1 to 128 characters of letters, digits and "-._~", so that it
// travels unchanged in a header and a user agent token. The error is a
// *FieldError for the field "caller", matching ErrInvalidConfig.
func ValidateCaller(name string) error {
	if name == "" || len(name) > 128 {
		return invalid("caller", name, "must have 1 to 128 characters")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return invalid("caller", name, fmt.Sprintf("%q is not allowed (letters, digits and -._~ are)", r))
		}
	}
	return nil
}

// OtherCallers is the caller name under which callers beyond
// CallerLimits.MaxCallers share one limit.
const OtherCallers = "(other)"

// CallerLimits are server-side limits applied to each caller separately, so
// that one misbehaving consumer cannot take a service down for the others.
// Requests without a caller identity share the limit of the caller "".
// It is plain data.
type CallerLimits struct {
	// Rate is the requests per second each caller may start; 0 means no rate limit.
	Rate float64 `yaml:"rate,omitempty" json:"rate,omitempty"`
	// Burst is how many requests a caller may start back to back; 0 means 1.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty"`
	// MaxConcurrent is how many requests of one caller may run at once; 0 means no limit.
	MaxConcurrent int `yaml:"max_concurrent,omitempty" json:"max_concurrent,omitempty"`
	// MaxCallers caps the callers tracked separately (0 means 1000);
	// further callers share the limit of OtherCallers.
	MaxCallers int `yaml:"max_callers,omitempty" json:"max_callers,omitempty"`
}

// Validate reports the first invalid field as a *FieldError matching
// ErrInvalidConfig, named by its yaml path such as "caller_limits.rate".
func (l CallerLimits) Validate() error {
	v := validator{prefix: "caller_limits."}
	if l.Rate < 0 {
		v.fail("rate", l.Rate, "must not be negative")
	}
	if l.Burst < 0 {
		v.fail("burst", l.Burst, "must not be negative")
	}
	if l.MaxConcurrent < 0 {
		v.fail("max_concurrent", l.MaxConcurrent, "must not be negative")
	}
	if l.MaxCallers < 0 {
		v.fail("max_callers", l.MaxCallers, "must not be negative")
	}
	if l.Rate == 0 && l.MaxConcurrent == 0 {
		v.fail("rate", l.Rate, "set rate or max_concurrent")
	}
	return v.err
}

// CallerLimiter applies CallerLimits per caller. The HTTP middleware and
// the gRPC server interceptors use it; Acquire serves other transports.
// Update changes the limits while it runs.
//
// CallerLimiter is safe for concurrent use.
type CallerLimiter struct {
	obs *observer

	mu         sync.RWMutex
	limits     CallerLimits
	maxCallers int
	callers    map[string]*callerState
}

// callerState is one caller's limits; it is replaced, never changed, so
// that Acquire reads it without holding the lock.
type callerState struct {
	limiter    ratelimiter.RateLimiter[any]
	bulkhead   bulkhead.Bulkhead[any]
	retryAfter time.Duration
	calls      *atomic.Uint64 // requests seen, admitted or not; kept across limit changes
}

// NewCallerLimiter validates limits and returns a limiter for them.
func NewCallerLimiter(limits CallerLimits, opts ...Option) (*CallerLimiter, error) {
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	l := &CallerLimiter{
		obs:     newObserver("callers", &o, newInstruments(o.meter), &counters{}),
		callers: map[string]*callerState{},
	}
	l.setLimits(limits)
	return l, nil
}

func (l *CallerLimiter) setLimits(limits CallerLimits) {
	l.limits, l.maxCallers = limits, limits.MaxCallers
	if l.maxCallers == 0 {
		l.maxCallers = 1000
	}
}

// Update validates limits and, if they are valid, applies them: requests
// admitted afterwards are limited by them, those admitted before finish
// as they are (a request admitted before a change of max_concurrent does
// not count against the new limit). A caller whose rate and burst did not
// change keeps its rate limiter's state, one whose max_concurrent did not
// change keeps its slots; a changed limit starts afresh (a full burst,
// free slots). A lower max_callers applies to callers not seen yet. Invalid
// limits are rejected and the current ones stay. With package config,
// config.Follow(cfg, "caller_limits", limiter.Update) makes the limits
// follow the configuration.
func (l *CallerLimiter) Update(limits CallerLimits) error {
	if err := limits.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.limits
	l.setLimits(limits)
	if old.Rate == limits.Rate && old.Burst == limits.Burst && old.MaxConcurrent == limits.MaxConcurrent {
		return nil
	}
	for name, s := range l.callers {
		l.callers[name] = l.newState(old, s)
	}
	return nil
}

// newState returns the state of a caller under l.limits, keeping what
// prev (built under the limits old) holds that did not change. Called with
// mu held.
func (l *CallerLimiter) newState(old CallerLimits, prev *callerState) *callerState {
	lim := l.limits
	s := &callerState{calls: new(atomic.Uint64)}
	if prev != nil {
		s.calls = prev.calls
	}
	if lim.Rate > 0 {
		if prev != nil && prev.limiter != nil && old.Rate == lim.Rate && old.Burst == lim.Burst {
			s.limiter = prev.limiter
		} else {
			s.limiter = buildLimiter(RateLimit{Rate: lim.Rate, Burst: lim.Burst})
		}
		s.retryAfter = time.Duration(float64(max(lim.Burst, 1)) / lim.Rate * float64(time.Second))
	}
	if lim.MaxConcurrent > 0 {
		if prev != nil && prev.bulkhead != nil && old.MaxConcurrent == lim.MaxConcurrent {
			s.bulkhead = prev.bulkhead
		} else {
			s.bulkhead = bulkhead.New[any](uint(lim.MaxConcurrent))
		}
	}
	return s
}

// Limits returns the limits in effect.
func (l *CallerLimiter) Limits() CallerLimits {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.limits
}

func (l *CallerLimiter) state(caller string) *callerState {
	l.mu.RLock()
	s, ok := l.callers[caller]
	l.mu.RUnlock()
	if ok {
		return s
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.callers[caller]; ok {
		return s
	}
	if len(l.callers) >= l.maxCallers {
		caller = OtherCallers
		if s, ok := l.callers[caller]; ok {
			return s
		}
	}
	s = l.newState(l.limits, nil)
	l.callers[caller] = s
	return s
}

// CallerPermit is one request admitted by a CallerLimiter. Call Release
// exactly once when the request is over.
//
// A CallerPermit must not be used from several goroutines at once.
type CallerPermit struct {
	b bulkhead.Bulkhead[any]
}

// Release frees the caller's concurrency slot.
func (p CallerPermit) Release() {
	if p.b != nil {
		p.b.ReleasePermit()
	}
}

// Acquire admits one request of caller, or returns an *Error matching
// ErrRejected with Reason ReasonCallerLimit. It does not wait.
func (l *CallerLimiter) Acquire(ctx context.Context, caller string) (CallerPermit, error) {
	s := l.state(caller)
	s.calls.Add(1)
	if s.limiter != nil && !s.limiter.TryAcquirePermit() {
		return CallerPermit{}, l.reject(ctx, caller, ratelimiter.ErrExceeded, s.retryAfter)
	}
	if s.bulkhead != nil {
		if !s.bulkhead.TryAcquirePermit() {
			return CallerPermit{}, l.reject(ctx, caller, bulkhead.ErrFull, BusyRetryAfter)
		}
		return CallerPermit{b: s.bulkhead}, nil
	}
	return CallerPermit{}, nil
}

func (l *CallerLimiter) reject(ctx context.Context, caller string, cause error, retryAfter time.Duration) error {
	l.obs.count.rejected.Add(1)
	l.obs.inst.rejections.Add(ctx, 1, l.obs.with("reason", string(ReasonCallerLimit)))
	if lg := l.obs.logger; lg != nil && lg.Enabled(ctx, slog.LevelDebug) {
		lg.Debug("resilience: caller limited", slog.String("caller", caller), slog.Any("cause", cause))
	}
	return &Error{Policy: "caller " + caller, Reason: ReasonCallerLimit, Cause: cause, RetryAfter: retryAfter}
}

// Rejected returns how many requests the limiter has refused.
func (l *CallerLimiter) Rejected() uint64 { return l.obs.count.rejected.Load() }
