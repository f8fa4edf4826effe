// Package admin is the operator's view of one service instance: the
// answers to "which breakers are open, which instances are ejected and
// why, is discovery stale, are consumers dead-lettering, was a config
// change rejected, who calls me so hard" — on a listener of its own,
// loopback by default, which package service runs (service.Config.Admin).
//
//	srv, err := admin.New(admin.Config{Token: os.Getenv("ADMIN_TOKEN")},
//		admin.WithPolicies(registry),   // breakers, retry budgets
//		admin.WithClients(monitor),     // downstream instances (client.WithMonitor)
//		admin.WithConfig(conf),         // sources, rejections, values (redacted)
//		admin.WithCallers(limiter),     // who calls, at what rate, under which limit
//		admin.WithMetrics(metrics),     // /metrics and the consumers' counts
//	)
//	err = srv.Start(ctx) // or serve srv.Handler() yourself
//	defer srv.Close(ctx)
//
// # Endpoints
//
//	GET  /                     the page: server-rendered, no external assets,
//	                           refreshing itself every Config.Refresh
//	GET  /api/v1/state         the same state as JSON (State); stable: fields
//	                           are only added within v1
//	GET  /livez /readyz /health  the service's health, as on its main port
//	GET  /metrics              Prometheus exposition of the OpenTelemetry
//	                           metrics (docs/metrics.md lists Vitamin's)
//	GET  /debug/pprof/         net/http/pprof
//	GET  /api/v1/profiles/{file}  a captured profile
//	POST /api/v1/breakers/{policy}/{open|close|reset}
//	POST /api/v1/services/{service}/instances/{id}/clear-ejection
//
// A cluster view (the Turbine role) or a script reads many instances'
// /api/v1/state; `vitamin status ADDR` prints one in a terminal.
//
// # Actions
//
// The POST endpoints change state, and nothing else does. Each needs
// Config.Token (default: the VITAMIN_ADMIN_TOKEN environment variable),
// as "Authorization: Bearer <token>" or the page's credential field:
// without it they answer 401, with a wrong one 403, and when no token is
// configured every action is refused with 403. A browser's cross-origin
// request is refused with 403 before the credential is looked at
// (http.CrossOriginProtection: CSRF), and the page may not be framed. Each
// action is logged and counted (MetricActions); the answer is an
// ActionResult in JSON. "close" and "reset" both close the breaker with a
// fresh window; "open" opens it for its OpenFor, after which it
// half-opens as usual.
//
// # Automatic profiles
//
// The Profiler reads the container's CPU quota and memory limit from
// cgroup v2 (cpu.max, memory.max) or v1 (cpu.cfs_quota_us,
// memory.limit_in_bytes) under Profiling.CgroupRoot. Every Window it
// compares the process's CPU time over the window with the quota and the
// memory the Go runtime holds with the limit; past CPUShare or
// MemoryShare it writes a CPU, a heap and a goroutine profile to
// Profiling.Dir (at most MaxCaptures captures: the oldest is removed
// first), logs and counts it (MetricProfiles) and lists it on the page; no
// capture follows another within Cooldown. Off Linux or without limits it
// says so on the page and does nothing.
//
// Start also sets the Go runtime's soft memory limit (GOMEMLIMIT) to
// MemoryLimit.Share of the container's memory limit, unless GOMEMLIMIT is
// set or MemoryLimit.Disabled; Go's container-aware GOMAXPROCS does not.
//
// # Concurrency
//
// A Server and a Profiler are safe for concurrent use; Start and Close
// are called once each.
package admin
