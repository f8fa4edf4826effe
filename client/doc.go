// Package client builds gRPC and HTTP clients that call other services by
// name, with client-side load balancing over a discovery watch: the way one
// domain service calls another.
//
//	conn, err := client.NewGRPC(ctx, "inventory", client.Config{}, client.WithWatcher(w), client.WithPolicies(policies))
//	hc, err := client.NewHTTP("orders", client.Config{}, client.WithWatcher(w), client.WithCaller("checkout"))
//	resp, err := hc.Get("http://orders/v1/orders/42")
//
// # Settings: Config and options
//
// A constructor takes the service's name, a Config and options. Config holds
// what a person writes in a file — how calls are balanced (Balancing) —
// with snake_case yaml and json keys and documented defaults; its zero
// value is the defaults. Options hold what only code can give: the watcher
// (WithWatcher, required), the policy registry, the caller's own name, a
// logger, a meter provider, dial options or a base transport. Options are
// typed by the constructor they belong to: an Option (WithWatcher,
// WithPolicies, WithCaller…) applies to both; a GRPCOption (WithDialOptions,
// WithGRPCTracing) only to NewGRPC and an HTTPOption (WithBaseTransport,
// WithHTTPTracing, WithRetryNonIdempotent) only to NewHTTP and NewTransport,
// so a misapplied option does not compile. An invalid field or option
// fails the constructor with a *FieldError naming it, which matches
// ErrInvalidConfig.
//
// # What a client does for each call
//
// It follows the service's instances through a discovery.Watcher (Consul's,
// or the in-memory vitamintest.Registry), picks an instance, applies the
// target's resilience policy — retries and hedges go to another instance
// than the attempts before them — propagates the trace context and sends
// the caller's identity (in a gRPC connection's user agent, see
// WithCaller; in the resilience.CallerHeader header over HTTP).
//
// gRPC clients are plain *grpc.ClientConn values built with grpc.NewClient
// and grpc-go's own extension points: a resolver given to the connection
// (grpc.WithResolvers, nothing registered globally) and a balancer,
// registered once when the package is initialized, as grpc-go requires, and
// selected by name (see BalancerName). HTTP clients are plain *http.Client values
// whose *Transport resolves URLs such as http://orders/v1/orders/42; only
// idempotent requests are retried unless WithRetryNonIdempotent says so.
//
// # Transparent retries
//
// An attempt that provably never reached a server goes on to another
// instance inside the same attempt of the policy: Retry.MaxAttempts, the
// retry budget and the circuit breaker do not see it, so a dead
// instance's refused connections cannot spend the budget that guards
// against retry storms. What counts as never reached a server:
//
//   - gRPC: what grpc-go itself retries transparently — the picked
//     connection's transport was closing or draining when the stream was
//     created (a NewStream error that allows a transparent retry, such as
//     transport.ErrConnClosing); the stream's headers were never written
//     before the connection failed, the server refused the stream
//     (REFUSED_STREAM) or its GOAWAY left the stream out (grpc-go retries
//     such an unprocessed stream once per call); or the picked SubConn was
//     no longer ready. grpc-go picks again through Vitamin's picker, which
//     skips the instances the call has tried; the attempt's deadline
//     bounds it.
//   - HTTP: the connection to the instance could not be opened (a
//     *net.OpError from dialing: refused, unreachable, dial timeout). The
//     request is sent to an instance the call has not tried, whatever its
//     method, up to 3 times per attempt (see Transport).
//
// Everything else is an attempt's failure, retried by the policy and
// charged to its budget: a connection reset or EOF after the request was
// written, a timeout, an UNAVAILABLE or 5xx answer — the server may have
// received and processed the request. When an instance dies, the calls it
// had in flight fail at once this way; the budget paces their retries
// (resilience.Budget.MaxWait) rather than failing them. HTTP's
// transparent retries are counted by MetricRedispatches (reason
// "not_sent"); grpc-go's are its own.
//
// # Stalled attempts
//
// An attempt stuck on an instance that stopped answering (a frozen
// process, a full accept queue) would end only with its deadline, and the
// call with it when the call's deadline is shorter than the policy's
// Timeout. When a retry can follow the attempt and it has a deadline, the
// balancer looks at it at half and at three quarters of its time: if its
// instance has answered nothing for three quarters of the attempt's age
// and for four times the service's typical latency, while the other
// instances answered within a quarter of that, it ends the attempt as
// timed out
// (resilience.ErrTimeout, a DEADLINE_EXCEEDED for the instance's outlier
// ejection), and the policy retries it on another instance while the call
// still has time. It is the retry a timeout would have brought, only
// sooner, so it is charged to the budget like one and is made only for
// calls the policy retries (for HTTP, idempotent requests); a slow call on
// an instance that keeps answering others, or on a service whose
// instances are all slow, is left alone. Counted by MetricRedispatches
// (reason "stalled").
//
// # Choosing an instance
//
// By default the balancer samples two eligible instances at random and
// takes the cheaper: peak-EWMA latency × (requests in flight + 1), the
// power of two choices. A latency estimate jumps to a slower sample at once
// (fourfold at most: one pause or cold connection does not make an instance
// look many times slower than its peers) and comes down with faster ones;
// an instance that gets no calls sees its estimate decay within a few dozen
// typical calls' time, so that identical instances share calls evenly at
// any concurrency, while one that is tried again and is still slow is left
// alone twice as long each time, up to Balancing.DecayTime. While calls are
// in flight, an instance that has not answered for longer than its estimate
// is taken to be at least that slow, so calls stop going to a stuck
// instance long before the stuck ones time out. A failed call counts as at
// least Balancing.FailurePenalty slow (by default five times the typical
// latency), so failing fast does not attract traffic. Picks that sent
// nothing (gRPC picks again when a connection was not ready) teach the
// balancer nothing. RoundRobin is the alternative.
//
// # Outlier ejection
//
// An instance that fails Outlier.Consecutive calls in a row (connection
// errors, gRPC UNAVAILABLE, HTTP 5xx, or timeouts while it answers nothing
// else) — or refuses a connection — is ejected for Outlier.BaseEjection, longer each time it is ejected again, up to
// Outlier.MaxEjection. At most Outlier.MaxEjectedShare of the instances are
// ejected at once, and when fewer than Outlier.PanicThreshold of them are
// left, ejection is ignored. A gRPC instance whose connection is down is
// skipped until it reconnects.
//
// # Subsets and zones
//
// Instance metadata defines subsets: a Canary weight sends a share of calls
// to instances with version=canary; a Pin header, gRPC metadata entry or
// baggage member routes a call to the instances with that version; a Sticky
// key always lands on the same group of instances (A/B assignment by the
// key's hash); Balancing.Zone keeps calls in the caller's zone while it has
// instances.
//
// # Progressive delivery: stage, canary, all
//
// A new build is rolled out by configuration, not by redeploys: its
// instances carry their version in metadata (discovery.MetaVersion), and
// the caller's Balancing says what they get. Stage gives them only calls
// pinned to them (a smoke test in production with production settings);
// Canary gives them a share; without either they are instances like the
// others. Each step is a change of the Routing (see below), so a Consul
// KV transaction promotes or rolls back every caller at once.
//
// A Canary with a Guard is watched: the confidence guard compares the
// canary's calls with the baseline's (the other instances, on the same
// calls) over windows of canary calls — error rates, and how many
// successful calls are slower than a margin over the baseline's p99 —
// with one-sided tests whose false alarms over the canary's life stay
// below Guard.FalseAlarm. When the canary is worse beyond the margins, the
// guard pulls it: its share drops to 0 (pinned calls still reach it, the
// baseline is never cut), a line is logged, MetricCanaryPulls counts it,
// WithGuardHandler hears of it with the evidence (a GuardEvent with both
// subsets' figures), and the Monitor's state shows it. A pulled canary
// comes back only with a change of the Canary configuration. While a
// canary is set, MetricSubsetCalls and MetricSubsetDuration record both
// subsets' calls, for dashboards and outside analysis.
//
// # Live routing
//
// Config.Balancing is fixed when the client is built. A Routing, given with
// WithRouting, is a Balancing that changes while the client runs —
// algorithm, outlier ejection, canary weight, pins, sticky groups, zone —
// and follows the configuration with one line:
//
//	config.Follow(cfg, "clients.orders.balancing", routing.Update)
//
// Each update is validated whole and reaches the next attempt of every
// call, those in flight included, on the same connections; instances keep
// their latency estimates and ejections.
//
// # No instances
//
// A call to a service with no instance fails at once with an error matching
// ErrNoInstances (gRPC status UNAVAILABLE) whose message names the service;
// calls succeed again as soon as instances return, without a restart.
//
// # Fan-out
//
// FanOut runs several downstream calls concurrently, each with its own
// fallback, and returns every call's result or error, so that a gateway can
// answer with what it got.
//
// # Observability
//
// Instance set changes and ejections go to an optional *slog.Logger
// (WithLogger; nil is silent); ejections are counted through the
// OpenTelemetry API (MetricEjections). Calls are traced by the tracinggrpc
// and tracinghttp handlers unless WithoutTracing is given.
//
// # Concurrency
//
// Connections, clients and Transports are safe for concurrent use;
// Config, Balancing, Call, Result and Results are plain values; options are
// applied once, at construction.
package client
