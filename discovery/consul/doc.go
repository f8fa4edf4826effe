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
// the next heartbeat (TTL) or reconciliation (other checks, every
// RegistrarConfig.ReconcileInterval) gets "unknown check" or "unknown
// service" (404) and registers it again under the same ID, so there is
// never a duplicate.
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
// keys (wait_time, backoff, max_backoff, self_preservation…), so they can
// be written in a file; invalid settings fail at construction with a
// [*discovery.FieldError] matching [discovery.ErrInvalidConfig]. What only
// code can give (a logger) is an [Option].
package consul
