// Package config loads layered configuration and serves it as typed
// dynamic properties that change while the service runs, on koanf v2.
//
// # Layers
//
// [Load] reads every configured layer once; each overrides the ones before
// it:
//
//  1. defaults (a struct or a map),
//  2. a file (YAML, JSON or TOML),
//  3. live [Source]s, such as Consul KV
//     ([github.com/vitamin-go/vitamin/config/consul]),
//  4. environment variables with a prefix (APP_DB_POOL_MAX sets
//     db.pool.max).
//
// A key missing from a layer falls through to the layers below, so the
// defaults fill the gaps. [Config.Watch] follows the file (surviving
// editors that write a temporary file and rename it over the old one) and
// the sources until its context is done.
//
// # Snapshots
//
// Each change builds a new immutable [Snapshot] of all layers and swaps it
// atomically: a reader never sees half of a change, and a key deleted from
// its layer really disappears (the layers below show through).
//
// # Properties
//
//	pool := config.Int(cfg, "db.pool.max", 10, config.Between(1, 100))
//	db.SetMaxOpenConns(pool.Get())
//	pool.OnChange(func(old, new int) { db.SetMaxOpenConns(new) })
//
// [Int], [Float], [Bool], [String], [Duration] and [Value] return a
// [Property] whose Get is lock-free and does not allocate, and whose
// OnChange callbacks run once per real change. [Bind] follows all keys
// under a prefix as one struct, validated as a whole.
//
// # Rejected changes
//
// A value that does not parse or fails a validator, and a file that does
// not parse, are rejected: the last good value stays, the rejection is
// logged with the key and the reason, counted (vitamin.config.rejections)
// and passed to the handler given with [WithErrorHandler] as a
// [*RejectedError]. A source that cannot reach its backend reports itself
// stale ([Config.Stale]); its last good keys stay.
//
// This package imports no Consul code; the Consul KV source lives in
// [github.com/vitamin-go/vitamin/config/consul].
package config
