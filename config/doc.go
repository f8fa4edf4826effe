// Package config loads layered configuration and serves it as typed
// dynamic properties that change while the service runs, on koanf v2.
//
// # Layers
//
// Defaults < file (YAML, JSON, TOML) < Consul KV under a prefix <
// environment variables with a prefix. One call loads all that are
// configured.
//
// # Snapshots and properties
//
// Each change builds a new immutable snapshot and swaps it atomically; a
// reader never sees half of a change. A property's Get is lock-free and
// does not allocate. A change that fails parsing or validation is rejected:
// the last good value stays, and the rejection is reported.
//
// This package imports no Consul code; the Consul KV source lives in
// [github.com/vitamin-go/vitamin/config/consul].
package config
