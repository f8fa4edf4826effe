// Package vitamintest is Vitamin's test kit, the way net/http/httptest
// serves users of net/http: the real systems a service's tests need, started
// inside the test and stopped with it, and the in-memory test doubles. Vitamin's
// own tests and Examples use it too.
//
//   - [StartNATS]: a NATS server with JetStream embedded in the test
//     process, its store in a temporary directory.
//   - [StartConsul]: a real Consul agent in dev mode on free loopback ports
//     (a binary from VITAMIN_CONSUL_BIN, the Vitamin repository's
//     .bin/consul, or PATH).
//   - [StartNATSCluster]: three NATS servers with JetStream, clustered on
//     loopback, for replicated streams and KV buckets; a test can stop a
//     stream's leader ([NATSCluster.StreamLeader]) and start it again.
//   - [StartConsulCluster]: a Consul cluster as production runs one — three
//     servers and a client agent, each its own process with its own data
//     directory — whose leader a test can kill to force an election.
//   - [StartPostgres]: a fresh schema on a PostgreSQL server, dropped when
//     the test ends.
//   - [Registry]: an in-memory service registry, a discovery.Registrar and
//     discovery.Watcher that a test can mark unhealthy or unreachable.
//   - [StartProcess]: the test binary run again as its own OS process (its
//     TestMain runs the child's code), for faults that are a process's:
//     SIGKILL, SIGSTOP, SIGTERM and real restarts.
//   - [Eventually], [Metrics], [Buffer]: waiting on a condition, reading
//     back OpenTelemetry metrics and logs.
//
// # Real systems, stopped for real
//
// Each helper takes a testing.TB, registers its own cleanup and can be
// stopped and started again by a fault test: Consul.Stop and
// Consul.Restart kill and restart the agent process on the same ports,
// NATS.Stop and NATS.Restart shut the embedded server down and start it
// again with the same store and port.
//
// # Missing dependencies
//
// When a dependency is missing (no Consul binary, no PostgreSQL server), a
// test skips with one line naming how to provide it. Under CI (CI=true) it
// fails instead, so a broken machine cannot pass as green.
//
// # Outside a test function
//
// [Detached] and [RunMain] let an Example or a TestMain start these systems.
package vitamintest
