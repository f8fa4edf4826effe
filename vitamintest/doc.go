// Package testenv starts the real systems Vitamin's tests run against: a
// Consul dev agent, an embedded NATS server with JetStream, and a fresh
// schema on a PostgreSQL server.
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
// test skips with one line naming the command that provides it. Under CI
// (CI=true) it fails instead, so a broken machine cannot pass as green.
package vitamintest
