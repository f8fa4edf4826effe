// Package discovery describes service instances and how they register and
// find each other, independently of any backend.
//
// # What it owns
//
// An [Instance] is one running copy of a service: its ID, service name,
// address, port, tags and metadata (version, zone, weight, canary…). A
// registrar announces an instance; a watcher follows the set of healthy
// instances of a service and says when that set is stale (the backend is
// unreachable) and when it was last confirmed.
//
// # Self-preservation
//
// A watch never trusts a sudden empty set, or a drop of more than a
// configured share of instances, until a second read confirms it; until
// then the last good set is served. When the backend cannot be reached, the
// last good set is served and marked stale.
//
// # Backends
//
// This package imports no backend. The Consul implementation lives in
// [github.com/vitamin-go/vitamin/discovery/consul]; an in-memory registry
// here serves tests and single-process systems.
package discovery
