// Package discovery describes service instances and how they register and
// find each other, independently of any backend.
//
// # What it owns
//
// An [Instance] is one running copy of a service: its ID, service name,
// address, port, tags and metadata (version, zone, weight, canary…). A
// [Registrar] announces an instance described by a [Registration] (with an
// optional health [Check]); a [Watcher] follows the set of healthy
// instances of a service. Bad input is rejected at registration with a
// [*FieldError] that names the field, behind [ErrInvalidRegistration]; bad
// settings given to a constructor likewise, behind [ErrInvalidConfig].
//
// # Watching
//
// [Watch.Next] blocks until the watched set changes and returns a
// [Snapshot]: the instances (sorted by ID), whether they are stale (the
// backend is unreachable) or preserved (see below), when the backend last
// confirmed them, and the backend's error while stale. A consumer loops on
// Next; watches of one service share one backend query ([Feed]), and
// [WithTags], [WithMeta] and [WithFilter] narrow each watch in the process.
//
// # Self-preservation
//
// A watch never trusts a sudden empty set, or a drop of more than a
// configured share of instances, until a second read confirms it; until
// then the last good set is served with Preserved set ([SelfPreservation],
// [Guard]). After the backend may have lost its state (a restart, an index
// that went backwards, an answer after failures), it is more cautious
// still: for a grace period, any answer that lacks instances of the last
// good set is held, until the grace has passed. When the
// backend cannot be reached, the last good set is served and marked stale.
//
// # Backends
//
// This package imports no backend. The Consul implementation lives in
// [github.com/vitamin-go/vitamin/discovery/consul]. [Memory] is an
// in-memory registrar and watcher with the same self-preservation, for
// single-process systems and tests (the test kit's
// vitamintest.Registry is the same type); it can simulate failing checks
// and an unreachable backend.
package discovery
