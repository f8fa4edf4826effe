// Package service runs one instance of a domain service: its HTTP and gRPC
// servers, health endpoints, registration in discovery, message consumers,
// resources and telemetry, started in order and stopped in the reverse
// order without dropping a call.
//
//	svc, err := service.New(cfg, // a Config, as loaded from the service's file
//		service.WithHTTP(mux),
//		service.WithGRPC(func(s *grpc.Server) { orderspb.RegisterOrdersServer(s, impl) }),
//		service.WithConsumer(consumer),     // a *messaging.Consumer
//		service.WithCloser(publisher),      // a *messaging.Publisher
//		service.WithReadiness("db", db.PingContext),
//	)
//	if err != nil { … }
//	err = svc.Run(ctx) // until SIGTERM, SIGINT or ctx done
//
// Config is what a person writes in the service's configuration file
// (name, instance ID, addresses, advertised address, checks, deadlines),
// loaded for example with package config (Snapshot.Unmarshal); options
// carry what only code can give. What is built with the service's Logger
// or Consul client is handed over with Add, before Run:
//
//	svc, err := service.New(cfg)
//	watcher, err := consul.NewWatcher(svc.Consul(), consul.WatcherConfig{}, consul.WithLogger(svc.Logger()))
//	err = svc.Add(service.WithCloser(service.CloseIO(watcher)))
//
// # Start
//
// Run starts the service in this order:
//
//  1. configuration: New validates Config (an invalid field fails with a
//     *FieldError naming it, behind ErrInvalidConfig) and fills in defaults;
//  2. telemetry: tracing.Setup with Config.Telemetry; the logger (Logger)
//     adds the trace and span IDs of each record's context;
//  3. listeners: HTTPAddr, and GRPCAddr with WithGRPC (a port in use is an
//     error naming the field and the address), then the admin listener
//     (see Admin below);
//  4. servers serving, not ready yet: /readyz answers 503 and the gRPC
//     health service NOT_SERVING;
//  5. ready: the readiness checks (WithReadiness) pass, within StartTimeout;
//  6. registered in discovery: the registrar of WithRegistrar, else Consul
//     when Config.Consul.Address, CONSUL_HTTP_ADDR or WithConsul says
//     where, else the in-memory registry (Service.Registrar), through
//     which in-process callers find the service;
//  7. consumers running (WithConsumer), then the start hooks.
//
// A failure at any step undoes the steps before it, through the stop below:
// no listener, registration or goroutine is left, and Run returns the
// failure.
//
// A registry that cannot be reached at start (Consul down, a sidecar agent
// not up yet) is asked again with backoff until StartTimeout (default 30s)
// has passed since the start began; then the start fails with an error
// naming the registry and its last error. The service does not run
// unregistered: an instance that no caller can find and no check watches
// would look healthy to Kubernetes while serving nothing, so failing lets
// the orchestrator restart it and show the cause.
//
// # Stop
//
// On the first SIGTERM or SIGINT (WithSignals changes them), or when Run's
// context ends, the service stops in this order, each phase within its own
// deadline from Config.Shutdown:
//
//	phase        what happens                                               default
//	deregister   stop hooks; not ready (/readyz 503, gRPC NOT_SERVING);       5s
//	             deregister, waiting until the registry's watchers no
//	             longer list the instance
//	propagation  keep serving while callers' balancers (and Kubernetes        2s
//	             endpoints) drop the instance; skipped when the start
//	             failed before callers could see it
//	consumers    stop fetching; in-flight messages finish and are acked or    5s
//	             NAKed, never lost
//	drain        HTTP Shutdown and gRPC GracefulStop, then close what is     10s
//	             left
//	close        the WithCloser resources, last given first                   3s
//	telemetry    flush spans and metrics; close the admin listener           3s
//
// The deadlines add up: the worst case is their sum (Shutdown.Total), 28s
// with the defaults, within the 30s Kubernetes waits by default between
// SIGTERM and SIGKILL. When raising one, raise terminationGracePeriodSeconds
// to at least the sum. A second signal during the stop exits the process
// at once, with status 1.
//
// Run returns nil after a stop that went as planned, and an error joining
// the failures otherwise (a phase past its deadline, a resource that failed
// to close). A deregistration that the registry did not confirm in time is
// logged, not returned: the instance is gone, watchers see it late.
//
// # Health
//
// The HTTP server answers, on every path of its listener:
//
//	GET /livez    200 while the process runs; never depends on a dependency
//	GET /readyz   200 when ready, 503 while starting, while a readiness
//	              check fails and while stopping (with the reason)
//	GET /health   the same as /readyz
//
// and the gRPC server serves grpc.health.v1 from the same state: the empty
// service name and Config.Name report readiness, LivenessService
// ("liveness") reports SERVING while the process runs; Watch streams end
// when the drain begins, so that a caller watching the instance's health
// does not hold the drain until its deadline. An open circuit
// breaker or an unreachable Consul never fails liveness, so Kubernetes does
// not restart every pod because a dependency is in trouble. A readiness
// check may fail on a dependency; the registry's check then takes the
// instance out of rotation until it passes again. Health requests are
// neither traced nor limited.
//
// # Admin
//
// Config.Admin is the admin listener (package service/admin), on
// 127.0.0.1:9091 by default, its own port, loopback only: the health
// endpoints again, /metrics (the service's OpenTelemetry metrics in the
// Prometheus format), /debug/pprof/, the state page at / and its JSON API
// at /api/v1/state, the operator's actions (with Admin.Token), and
// profiles captured automatically near the container's CPU quota or memory
// limit, with GOMEMLIMIT set from that limit. WithAdmin adds what to show:
//
//	svc, err := service.New(cfg, service.WithAdmin(
//		admin.WithPolicies(registry), admin.WithClients(monitor), admin.WithConfig(conf)))
//
// It serves from the listeners step of the start to the end of the stop,
// so that the page shows the stop too. When the default address is taken
// (two services on one host) the service runs without it and logs so; an
// address that was configured must be free. Admin.Disabled turns it off.
//
// # Registration
//
// Each listener that serves callers is registered as its own instance of
// Config.Name, tagged with its protocol (ProtocolHTTP or ProtocolGRPC),
// with a check of the registry's: an HTTP GET of /readyz, or a gRPC health
// check. A service that serves both registers "<InstanceID>-http" and
// "<InstanceID>-grpc"; a caller watches the port it speaks:
//
//	conn, err := client.NewGRPC(ctx, "orders", client.Config{},
//		client.WithWatcher(w, discovery.WithTags(service.ProtocolGRPC)))
//
// A gRPC-only service does not register its HTTP listener (which then
// serves only health); any other registers it under InstanceID itself.
//
// # Closing
//
// One contract closes everything the service owns: Closer, Close(ctx)
// within the phase's deadline (a *messaging.Publisher is one). CloseFunc
// and CloseIO adapt the other shapes (a shutdown func, Deregister(ctx),
// Close() error). A Runner (Run(ctx) and Stop(ctx), such as a
// *messaging.Consumer) is started with the consumers and stopped in their
// phase; RunFunc makes one of a function that runs until its context ends,
// such as (*config.Config).Watch.
//
// # Concurrency
//
// A Service is safe for concurrent use, except Add, which comes before Run;
// Run may be called once.
package service
