// Package consul registers service instances with a Consul agent and
// watches the healthy instances of a service with blocking queries. It
// implements [discovery.Registrar] and [discovery.Watcher].
//
// Both take an *api.Client: the ACL token, TLS settings, datacenter and
// HTTP transport come from the api.Config it was built from.
//
// # Registration
//
// [Registrar.Register] validates the instance (errors are a
// [*discovery.FieldError] naming the field),
// refuses an ID already registered at another address, and registers the
// instance through the local agent with the check of the caller's choice
// ([discovery.Check]): gRPC health (grpc.health.v1), HTTP, or a TTL that a
// goroutine of the registration renews. DeregisterCriticalServiceAfter,
// tags and metadata are passed on.
//
// When the agent forgets the instance — a restarted agent, a lost state —
// the registration learns it at once: each one holds a blocking query on
// the agent's copy of it, which fails when the agent goes away and answers
// "unknown service" (404) when it is back without the instance; a TTL
// heartbeat gets "unknown check" likewise. The registrar asks a vanished
// agent again with backoff (RegistrarConfig.Backoff up to MaxBackoff) and
// registers the instance again as soon as the agent answers, under the
// same ID, so there is never a duplicate. An HTTP or gRPC check whose last
// status read from the agent was passing is registered passing again
// (api.AgentServiceCheck.Status), rather than critical until the agent's
// first probe: the instance is alive, it is the agent that forgot it. The
// status is read once per check Interval (at most ReconcileInterval
// apart); a TTL check always starts passing. Each registration thus holds
// one connection to its agent.
//
// # Shutdown
//
// Mark the server not serving, then call [Registered.Deregister]: it stops
// the heartbeat, removes the instance and waits until the health endpoint
// that watchers read no longer lists it (bounded by DeregisterTimeout and
// the context). Then drain in-flight work and stop.
//
// # Watching
//
// [Watcher.Watch] follows the passing instances of a service. One blocking
// query loop runs per watched service per process, however many watches
// ask for it and whatever their tag or metadata filters; filtering happens
// in the process. The loop
//
//   - starts each query from the previous answer's LastIndex, and from 0
//     when the index goes backwards or after an error;
//   - reads with AllowStale unless WatcherConfig.RequireLeader is set;
//   - backs off exponentially with jitter after errors, from
//     WatcherConfig.Backoff up to MaxBackoff;
//   - applies self-preservation ([discovery.SelfPreservation]): an empty
//     answer, or one that drops more than MaxDrop of the instances, is
//     served only once a second read confirms it; until then snapshots
//     carry the last good set with Preserved set;
//   - after an agent restart — the index went backwards, or the agent
//     answers again after failures — holds the last good set (with any
//     instances the answers add), marked Preserved, until every instance
//     is back or SelfPreservation.RestartGrace (default 5s) has passed, so
//     that the restarted agent's empty answer is never served while the
//     registrars register their instances again; meanwhile it still hears
//     of each change at once;
//   - while the agent cannot be reached, serves the last good set marked
//     Stale, with the time it was last confirmed and the error.
//
// Every such event is logged when a logger is given ([WithLogger]).
//
// Watch snapshots are meant to be fed straight into a gRPC resolver or an
// HTTP balancer: loop on [discovery.Watch.Next].
//
// # Settings
//
// [RegistrarConfig] and [WatcherConfig] are plain data with yaml and json
// keys (wait_time, backoff, max_backoff, self_preservation.restart_grace,
// reconcile_interval…), so they can
// be written in a file; invalid settings fail at construction with a
// [*discovery.FieldError] matching [discovery.ErrInvalidConfig]. What only
// code can give (a logger) is an [Option].
package consul
