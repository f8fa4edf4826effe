// Package resilience protects calls to other services: timeouts, retries
// with budgets, circuit breakers, bulkheads, rate limits, hedging and
// fallbacks, built on github.com/failsafe-go/failsafe-go.
//
// # Policies as data
//
// A Policy is plain data with yaml and json tags, so it can be loaded from a
// file, the environment or a config store. Validate (or NewExecutor, or a
// Registry) rejects a bad spec with a *FieldError naming the field by its
// path, such as "retry.max_attempts", behind ErrInvalidConfig:
//
//	resilience: invalid configuration: retry.max_attempts = 0: must be at least 1
//
//	e, err := resilience.NewExecutor("inventory", resilience.Policy{
//		Timeout:        250 * time.Millisecond,
//		Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: 10 * time.Millisecond, Jitter: 0.2},
//		Budget:         &resilience.Budget{Ratio: 0.2},
//		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 20, FailureRate: 0.5, MinRequests: 10, OpenFor: 5 * time.Second},
//	})
//	err = e.Run(ctx, func(ctx context.Context) error { return callInventory(ctx) })
//
// The circuit breaker, bulkhead, rate limiter and retry policies are
// failsafe-go's. The per-attempt timeout is a context deadline (the
// attempt's context behaves as context.WithTimeout's would), not
// failsafe-go's timeout policy, so it costs no goroutine and travels to the server (gRPC sends it
// as grpc-timeout). A call that succeeds at once does not build a
// failsafe-go execution at all; failsafe-go's retry policy takes over on the
// first retryable failure.
//
// # Hedging
//
// Hedging is this package's own, so that a hedged call that succeeds at
// once costs no goroutine. The first attempt runs on the caller's
// goroutine; if it has not finished after Hedge.Delay (or the
// Hedge.Quantile of recent successful attempts, once 20 have been seen),
// a hedge starts on a timer's goroutine, and another after each further
// delay, up to MaxHedges. Each hedge spends the retry budget (none left:
// no more hedges, counted as budget exhausted) and passes the breaker,
// rate limit and bulkhead like any attempt (refused: it does not start).
// The first success or non-retryable failure wins and the other attempts'
// contexts are cancelled, so the function must honour its context, as gRPC
// and net/http do; the call returns once its own first attempt has
// returned. When every attempt started has failed with a retryable error,
// the group fails with the last one and Retry, if set, retries the whole
// group. Attempts run concurrently, so each must write to its own result
// (resiliencegrpc decodes each into its own reply). The hedge delays and
// the timeouts of hedged attempts are kept by two timer lists per executor
// (one runtime timer each) instead of a runtime timer per attempt; the
// attempt's context behaves as context.WithTimeout's would (its Deadline,
// context.DeadlineExceeded and context.Cause, the caller's cancellation,
// contexts derived from it), so a hedged call that succeeds at once costs
// no goroutine, no timer and no allocation for its context.
//
// # Retry budgets
//
// A Budget caps retries and hedges together at a share of calls (20 % by
// default), whether callers are concurrent or not, and at
// max(MinConcurrency, Ratio × calls in flight) at once. A retry that finds
// the budget short for the moment waits for it — up to Budget.MaxWait (1 s)
// for a running retry to end, up to 100 ms for calls in flight to earn
// back a spent balance — so a burst of failures, such as the calls in
// flight to an instance that just died, is paced instead of failed;
// otherwise it fails with ErrBudgetExhausted. Hedges never wait. The executor takes
// a retry's permit before failsafe-go's retry policy runs the attempt;
// hedges draw on the budget directly.
//
// # Named policies
//
// A Registry keeps executors keyed by target: a default for each service
// and overrides by service or service/method. Update swaps the whole
// configuration atomically: new calls use the new specs, calls in flight
// finish under the old ones, and a breaker, bulkhead, rate limiter or budget
// whose spec did not change keeps its state. Override keys are matched in
// a canonical form (lower case, ".", "/" and "-" read as "_"), so that
// "orders_pkg_orders_get" names "orders/pkg.Orders/Get" in a file, the
// environment and Consul KV alike (see Config).
//
// # Following configuration
//
// Registry.Update and CallerLimiter.Update validate a whole value and
// apply it atomically, or refuse it and keep the current one, which is
// what package config's Follow needs; this package does not import config:
//
//	err := config.Follow(cfg, "resilience", registry.Update)
//	err = config.Follow(cfg, "caller_limits", limiter.Update)
//
// # Errors and fallbacks
//
// A call refused or cut short by a policy fails with an *Error that matches
// ErrCircuitOpen, ErrRejected (bulkhead, rate limit, caller limit),
// ErrTimeout or ErrBudgetExhausted with errors.Is, and unwraps to
// failsafe-go's own error (circuitbreaker.ErrOpen, bulkhead.ErrFull, ...).
// Other failures are returned as the last attempt returned them.
// RunWithFallback and GetWithFallback run a fallback, as Hystrix did, on
// any failure, and hand it the cause.
//
// A Classifier decides which errors count against the breaker and which
// are retried; DefaultClassifier honours annotations made with WithOutcome,
// which transport adapters use for status codes, and Permanent errors are
// never retried.
//
// # Transports
//
// NewRoundTripper wraps an http.RoundTripper (429 and 5xx answers are
// failures; the body is replayed on retries). Middleware protects an HTTP
// server and answers 429 or 503 with Retry-After when it sheds load;
// per-caller limits (CallerLimiter) key on the CallerHeader the Vitamin
// client sends, so one noisy consumer cannot starve the others. gRPC
// interceptors live in the resiliencegrpc subpackage, so this package does
// not import gRPC.
//
// # Health checks and pushback on servers
//
// A server's limits never apply to its health checks: Middleware passes
// the paths of DefaultHealthPaths (/health, /healthz, /livez, /readyz,
// /ready, /live; WithHealthPaths replaces them) straight to the handler,
// and resiliencegrpc does the same for the grpc.health.v1.Health service.
// A check is not limited, shed, timed out or counted, so an instance at its
// limits stays registered instead of being deregistered and moving its
// load onto its peers.
//
// Every shed answer carries pushback, Retry-After on HTTP and
// grpc-retry-pushback-ms on gRPC (see Pushback): the time to the next
// permit for a rate or caller rate limit, the remaining open time for an
// open circuit, and BusyRetryAfter (one second) for a full bulkhead or
// concurrency limit, whose next free slot the server cannot foresee.
//
// # Observability
//
// State changes, retries, hedges, rejections, fallbacks and budget
// exhaustion go to an optional *slog.Logger (WithLogger; nil is silent) and
// to OpenTelemetry counters (see MetricCalls and the other Metric names)
// through the global meter provider or WithMeterProvider. Executor.Snapshot
// and Registry.Snapshot report each named policy's breaker state, window,
// budget left and totals for dashboards and health pages.
//
// # Concurrency
//
// Executor, Registry and CallerLimiter are safe for concurrent use; Policy
// and Config are values; Permit and CallerPermit belong to one attempt.
package resilience
