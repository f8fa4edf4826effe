package resilience

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrNoBreaker is returned by ForceCircuit for a name that has no
// executor, or whose policy has no circuit breaker.
var ErrNoBreaker = errors.New("resilience: no such circuit breaker")

// BreakerState is what an operator's page shows of one circuit breaker:
// its state against its thresholds. It is a plain value.
type BreakerState struct {
	// Policy is the executor's name, as in Snapshot.
	Policy string `json:"policy"`
	// State is "closed", "open" or "half-open".
	State string `json:"state"`
	// Since is when the breaker entered State (or when the executor was
	// made, if it never changed).
	Since time.Time `json:"since"`
	// FailureRate is the share of failed calls (slow calls included) in
	// the current window; FailureRateThreshold is the share that opens it.
	FailureRate          float64 `json:"failure_rate"`
	FailureRateThreshold float64 `json:"failure_rate_threshold"`
	// WindowCalls is the number of calls in the window; MinRequests the
	// number it needs before it may open.
	WindowCalls uint `json:"window_calls"`
	MinRequests int  `json:"min_requests"`
	// SlowCall is the duration above which a call counts as a failure;
	// 0 when slow calls do not count.
	SlowCall time.Duration `json:"slow_call"`
	// OpenFor is how long the breaker stays open; RemainingOpen how long
	// it will stay open from now.
	OpenFor       time.Duration `json:"open_for"`
	RemainingOpen time.Duration `json:"remaining_open"`
	// NotPermitted counts the calls refused by the executor's limits,
	// the open breaker included.
	NotPermitted uint64 `json:"not_permitted"`
}

// Breakers returns the state of each executor's circuit breaker created
// so far, sorted by name; executors without a breaker are left out.
func (r *Registry) Breakers() []BreakerState {
	st := r.cur.Load()
	var out []BreakerState
	for _, s := range r.Snapshot() {
		if b, ok := st.byKey[s.Policy].Breaker(); ok {
			out = append(out, b)
		}
	}
	return out
}

// Breaker returns the state of e's circuit breaker, and false when its
// policy has none.
func (e *Executor) Breaker() (BreakerState, bool) {
	b, cb := e.parts.breaker, e.spec.CircuitBreaker
	if b == nil || cb == nil {
		return BreakerState{}, false
	}
	m := b.Metrics()
	return BreakerState{
		Policy:               e.name,
		State:                stateName(b.State()),
		Since:                time.Unix(0, e.obs.since.Load()),
		FailureRate:          m.FailureRate(),
		FailureRateThreshold: cb.FailureRate,
		WindowCalls:          m.Executions(),
		MinRequests:          max(cb.MinRequests, 1),
		SlowCall:             cb.SlowCall,
		OpenFor:              cb.OpenFor,
		RemainingOpen:        b.RemainingDelay(),
		NotPermitted:         e.obs.count.rejected.Load(),
	}, true
}

// ForceCircuit opens (open true) or closes the circuit breaker of the
// executor named policy, as an operator's action: an opened breaker
// half-opens after its OpenFor as usual; a closed one starts a fresh
// window. It returns an error matching ErrNoBreaker when there is no such
// executor or it has no breaker.
func (r *Registry) ForceCircuit(policy string, open bool) error {
	e, ok := r.cur.Load().byKey[policy]
	if !ok || e.parts.breaker == nil {
		return fmt.Errorf("%w: %q", ErrNoBreaker, policy)
	}
	if open {
		e.parts.breaker.Open()
	} else {
		e.parts.breaker.Close()
	}
	return nil
}

// CallerState is one caller a CallerLimiter has seen, for an operator's
// page of who calls the service. It is a plain value.
type CallerState struct {
	// Caller is the caller's identity ("" for requests without one,
	// OtherCallers for those beyond MaxCallers).
	Caller string `json:"caller"`
	// Calls counts its requests since it was first seen, admitted or not.
	Calls uint64 `json:"calls"`
}

// Callers returns the callers seen so far, sorted by name. The limits
// that apply to each are Limits.
func (l *CallerLimiter) Callers() []CallerState {
	l.mu.RLock()
	out := make([]CallerState, 0, len(l.callers))
	for name, s := range l.callers {
		out = append(out, CallerState{Caller: name, Calls: s.calls.Load()})
	}
	l.mu.RUnlock()
	slices.SortFunc(out, func(a, b CallerState) int { return strings.Compare(a.Caller, b.Caller) })
	return out
}
