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
//     instances the answers add), marked Preserved, whenever an answer
//     lacks any of them during SelfPreservation.RestartGrace (default 5s),
//     so that neither a restarted dev agent's empty answer nor the
//     critical checks a restarted client agent restores from its data
//     directory are served while the registrars register their instances
//     again; meanwhile it still hears of each change at once;
//   - while the agent cannot be reached, serves the last good set marked
//     Stale, with the time it was last confirmed and the error;
//   - while the servers are not in contact with a leader (an election,
//     or the leader they follow is gone), serves every watched set marked
//     Stale with a [*NoLeaderError]: the set cannot change meanwhile, and
//     nothing registered or deregistered reaches it. One leader check per
//     Watcher (a stale KV read, answered by any server with the time since
//     it heard from the leader; WatcherConfig.LeaderCheck, default every
//     1s, and MaxLastContact, default 2s) serves all its watches; a client
//     agent's own health answers come from its streaming view and say
//     nothing of the leader.
//
// Every such event is logged when a logger is given ([WithLogger]).
//
// Watch snapshots are meant to be fed straight into a gRPC resolver or an
// HTTP balancer: loop on [discovery.Watch.Next].
//
// # Registering through a client agent
//
// A client agent that restarts with its data directory restores its
// services with their checks critical until the first probe or TTL
// renewal. The registrar sees the restart (its blocking query on the
// registration failed and the agent answers again) and, for a check it
// last read passing, registers the instance again as it was (an HTTP or
// gRPC check) or renews its TTL at once, so that watchers never see the
// instance go critical.
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
