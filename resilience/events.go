package resilience

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const meterName = "github.com/vitamin-go/vitamin/resilience"

// Metric names recorded through the OpenTelemetry API. Every instrument
// carries the attribute "policy" (the policy's name).
const (
	// MetricCalls counts finished calls by "outcome": success, failure,
	// timeout, circuit_open, rejected, budget_exhausted, canceled.
	MetricCalls = "vitamin.resilience.calls"
	// MetricRetries counts retries.
	MetricRetries = "vitamin.resilience.retries"
	// MetricHedges counts hedged attempts.
	MetricHedges = "vitamin.resilience.hedges"
	// MetricRejections counts attempts refused by a limit, by "reason".
	MetricRejections = "vitamin.resilience.rejections"
	// MetricFallbacks counts fallbacks run, by "cause" (an outcome).
	MetricFallbacks = "vitamin.resilience.fallbacks"
	// MetricCircuitTransitions counts circuit breaker state changes, by "state".
	MetricCircuitTransitions = "vitamin.resilience.circuit.transitions"
	// MetricBudgetExhausted counts retries and hedges refused by the budget, by "kind".
	MetricBudgetExhausted = "vitamin.resilience.budget.exhausted"
)

// Option configures an Executor, a Registry or a CallerLimiter with things
// only code can give. Options are applied once, at construction.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	meter      metric.MeterProvider
	classifier Classifier
}

// WithLogger sends state changes (Warn for a circuit opening, Info for it
// closing) and retries, rejections and fallbacks (Debug) to logger. nil,
// the default, is silent.
func WithLogger(logger *slog.Logger) Option { return func(o *options) { o.logger = logger } }

// WithMeterProvider records metrics through mp instead of the global
// OpenTelemetry meter provider (which is a no-op unless the application
// sets one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithClassifier replaces DefaultClassifier.
func WithClassifier(c Classifier) Option { return func(o *options) { o.classifier = c } }

func buildOptions(opts []Option) options {
	o := options{}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.meter == nil {
		o.meter = otel.GetMeterProvider()
	}
	if o.classifier == nil {
		o.classifier = DefaultClassifier
	}
	return o
}

// instruments are shared by all executors of a Registry.
type instruments struct {
	calls, retries, hedges, rejections, fallbacks, transitions, exhausted metric.Int64Counter
}

func newInstruments(mp metric.MeterProvider) *instruments {
	m := mp.Meter(meterName)
	in := &instruments{}
	// Instrument creation only fails for invalid names; ours are constant
	// and valid, and the API returns a usable no-op instrument anyway.
	in.calls, _ = m.Int64Counter(MetricCalls, metric.WithDescription("Calls run through a resilience policy, by outcome."))
	in.retries, _ = m.Int64Counter(MetricRetries, metric.WithDescription("Retries started."))
	in.hedges, _ = m.Int64Counter(MetricHedges, metric.WithDescription("Hedged attempts started."))
	in.rejections, _ = m.Int64Counter(MetricRejections, metric.WithDescription("Attempts refused by a limit, by reason."))
	in.fallbacks, _ = m.Int64Counter(MetricFallbacks, metric.WithDescription("Fallbacks run, by cause."))
	in.transitions, _ = m.Int64Counter(MetricCircuitTransitions, metric.WithDescription("Circuit breaker state changes, by new state."))
	in.exhausted, _ = m.Int64Counter(MetricBudgetExhausted, metric.WithDescription("Retries and hedges refused by the retry budget."))
	return in
}

// counters survive executor swaps of the same name.
type counters struct {
	calls, failures, rejected, retries, hedges, fallbacks, budgetExhausted atomic.Uint64
}

// observer reports the events of one named policy.
type observer struct {
	name   string
	logger *slog.Logger
	inst   *instruments
	policy attribute.KeyValue
	ok     []metric.AddOption // policy=name, outcome=success
	plain  []metric.AddOption // policy=name
	count  *counters
	since  atomic.Int64 // unix nanoseconds of the last circuit state change, or of the creation
}

func newObserver(name string, o *options, inst *instruments, c *counters) *observer {
	pol := attribute.String("policy", name)
	obs := &observer{
		name:   name,
		logger: o.logger,
		inst:   inst,
		policy: pol,
		ok:     []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(pol, attribute.String("outcome", "success")))},
		plain:  []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(pol))},
		count:  c,
	}
	obs.since.Store(time.Now().UnixNano())
	return obs
}

func (o *observer) with(key, value string) metric.AddOption {
	return metric.WithAttributeSet(attribute.NewSet(o.policy, attribute.String(key, value)))
}

func (o *observer) debug(msg string, args ...any) {
	if o.logger != nil && o.logger.Enabled(context.Background(), slog.LevelDebug) {
		o.logger.Debug(msg, append([]any{slog.String("policy", o.name)}, args...)...)
	}
}

func (o *observer) callDone(ctx context.Context, outcome string) {
	o.count.calls.Add(1)
	if outcome == "success" {
		o.inst.calls.Add(ctx, 1, o.ok...)
		return
	}
	o.count.failures.Add(1)
	o.inst.calls.Add(ctx, 1, o.with("outcome", outcome))
}

func (o *observer) retried(attempt int, cause error) {
	o.count.retries.Add(1)
	o.inst.retries.Add(context.Background(), 1, o.plain...)
	o.debug("resilience: retrying", slog.Int("attempt", attempt), slog.Any("cause", cause))
}

func (o *observer) hedged() {
	o.count.hedges.Add(1)
	o.inst.hedges.Add(context.Background(), 1, o.plain...)
	o.debug("resilience: hedging")
}

func (o *observer) rejected(ctx context.Context, reason Reason) {
	o.count.rejected.Add(1)
	o.inst.rejections.Add(ctx, 1, o.with("reason", string(reason)))
	o.debug("resilience: rejected", slog.String("reason", string(reason)))
}

func (o *observer) fellBack(ctx context.Context, cause error) {
	o.count.fallbacks.Add(1)
	outcome := outcomeOf(cause)
	o.inst.fallbacks.Add(ctx, 1, o.with("cause", outcome))
	o.debug("resilience: fallback", slog.String("cause", outcome), slog.Any("error", cause))
}

func (o *observer) budgetExhausted(kind string) {
	o.count.budgetExhausted.Add(1)
	o.inst.exhausted.Add(context.Background(), 1, o.with("kind", kind))
	o.debug("resilience: retry budget exhausted", slog.String("kind", kind))
}

func (o *observer) stateChanged(e circuitbreaker.StateChangedEvent) {
	state := stateName(e.NewState)
	o.since.Store(time.Now().UnixNano())
	o.inst.transitions.Add(context.Background(), 1, o.with("state", state))
	if o.logger == nil {
		return
	}
	level := slog.LevelInfo
	if e.NewState == circuitbreaker.OpenState {
		level = slog.LevelWarn
	}
	m := e.Metrics()
	o.logger.Log(context.Background(), level, "resilience: circuit "+state,
		slog.String("policy", o.name), slog.String("from", stateName(e.OldState)),
		slog.Uint64("failures", uint64(m.Failures())), slog.Uint64("executions", uint64(m.Executions())))
}

func stateName(s circuitbreaker.State) string {
	switch s {
	case circuitbreaker.OpenState:
		return "open"
	case circuitbreaker.HalfOpenState:
		return "half-open"
	default:
		return "closed"
	}
}

// outcomeOf names the outcome of a finished call for metrics.
func outcomeOf(err error) string {
	if err == nil {
		return "success"
	}
	switch c := Classify(err).(type) {
	case *Error:
		switch c.Reason {
		case ReasonCircuitOpen:
			return "circuit_open"
		case ReasonTimeout:
			return "timeout"
		case ReasonBudget:
			return "budget_exhausted"
		default:
			return "rejected"
		}
	}
	if isCanceled(err) {
		return "canceled"
	}
	return "failure"
}

// Snapshot is the state of one named policy, for dashboards and health
// pages. Counters are totals since the name was first used; they survive
// spec changes. It is a plain value (a copy), safe to keep and marshal.
type Snapshot struct {
	// Policy is the policy's name.
	Policy string `json:"policy"`
	// Circuit is "closed", "open" or "half-open"; empty without a breaker.
	Circuit string `json:"circuit,omitempty"`
	// CircuitOpenFor is how long the breaker stays open before half-opening.
	CircuitOpenFor time.Duration `json:"circuit_open_for,omitempty"`
	// FailureRate and WindowCalls describe the breaker's current window.
	FailureRate float64 `json:"failure_rate"`
	WindowCalls uint    `json:"window_calls"`
	// BudgetLeft is the number of retries or hedges the budget allows now;
	// -1 without a budget.
	BudgetLeft float64 `json:"budget_left"`
	// Totals.
	Calls           uint64 `json:"calls"`
	Failures        uint64 `json:"failures"`
	Rejected        uint64 `json:"rejected"`
	Retries         uint64 `json:"retries"`
	Hedges          uint64 `json:"hedges"`
	Fallbacks       uint64 `json:"fallbacks"`
	BudgetExhausted uint64 `json:"budget_exhausted"`
}

// Snapshot returns the current state of e.
func (e *Executor) Snapshot() Snapshot {
	s := Snapshot{Policy: e.name, BudgetLeft: -1}
	if b := e.parts.breaker; b != nil {
		s.Circuit = stateName(b.State())
		s.CircuitOpenFor = b.RemainingDelay()
		s.FailureRate = b.Metrics().FailureRate()
		s.WindowCalls = b.Metrics().Executions()
	}
	if b := e.parts.budget; b != nil {
		s.BudgetLeft = b.left()
	}
	c := e.obs.count
	s.Calls = c.calls.Load()
	s.Failures = c.failures.Load()
	s.Rejected = c.rejected.Load()
	s.Retries = c.retries.Load()
	s.Hedges = c.hedges.Load()
	s.Fallbacks = c.fallbacks.Load()
	s.BudgetExhausted = c.budgetExhausted.Load()
	return s
}
