// Package consul registers service instances with a Consul agent and
// watches the healthy instances of a service with blocking queries.
//
// # Registration
//
// An instance is registered through the local agent with a check of the
// caller's choice (gRPC health, HTTP, or a TTL that Vitamin renews), is
// registered again when the agent forgets it, and is deregistered
// gracefully: the call returns once the change is visible to watchers, so
// the caller can drain in-flight work.
//
// # Watching
//
// One blocking query runs per watched service per process, however many
// watchers ask for it. Self-preservation and staleness follow the rules of
// package [github.com/vitamin-go/vitamin/discovery].
package consul
