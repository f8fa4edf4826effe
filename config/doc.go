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
// # Decoding
//
// Settings structs carry one tag convention across Vitamin: `yaml` tags in
// snake_case, with identical `json` tags, as every Config of the module
// does. [Snapshot.Unmarshal], [Bind], [Value], [Follow] and Layers.Defaults
// read those tags the way a YAML decoder does: the tag's name (or, without
// a yaml tag, the json tag's, or the field's name in lower case), fields
// tagged "-" left out, a struct (or a map) tagged ",inline" read at its
// parent's level. omitempty matters only to Layers.Defaults, which leaves
// out empty fields and nil pointers.
//
// Decoding is strict. A key under the decoded prefix that names no field
// is an error ([ErrUnknownKey]), so a typo such as max_atempts is not
// silently a default; so is a value of the wrong type ([ErrInvalidValue]).
// Each is a [*KeyError] naming the full key, and every key at fault is
// reported:
//
//	resilience.default.retry.max_atempts: config: unknown key (the keys here are backoff, jitter, max_attempts, …)
//	resilience.default.retry.max_attempts: config: invalid value: "abc" is not an integer (int)
//
// The environment and Consul KV hold strings, so a string is read as the
// field needs it: "5" as an int, "0.5" as a float64, "true" as a bool,
// "a,b" as a list, "debug" through encoding.TextUnmarshaler. A number is
// read into an int only if it is whole. Durations are strings with a unit,
// "250ms" or "1m30s", or 0: a bare number is an error, since "timeout: 5"
// would otherwise mean 5ns.
//
// # Following a prefix
//
// [Follow] hands the keys under a prefix, decoded into a struct, to a
// function that validates and applies a whole value, now and after each
// change, so that a component follows the configuration with one line and
// neither imports the other:
//
//	err := config.Follow(cfg, "resilience", registry.Update)  // a resilience.Registry
//	err = config.Follow(cfg, "caller_limits", limiter.Update) // a resilience.CallerLimiter
//
// A change is applied whole or not at all: if any key under the prefix does
// not decode, or the function refuses the value, none of the change is
// applied and the component keeps its last good value. Keys changed
// together (a file saved at once, a Consul KV transaction) arrive as one
// change.
//
// Keys of a map, such as resilience's per-method overrides, cannot hold
// "." (it separates the parts of a key in every layer); resilience reads
// "orders_pkg_orders_get" as the target "orders/pkg.Orders/Get" for that
// reason (see resilience.Config).
//
// # Rejected changes
//
// A value that does not parse or fails a validator, a change under a
// followed or bound prefix that does not decode or is refused, and a file
// that does not parse, are rejected: the last good value stays, the
// rejection is logged with the key and the reason, counted
// (vitamin.config.rejections) and passed to the handler given with
// [WithErrorHandler] as a [*RejectedError]. [Config.Rejections] keeps the
// last rejection of each key, prefix and layer, with its time, key and
// reason, for an operator, until a later change there is accepted, which
// clears it: what it lists is configuration that is written but not in
// effect. A source that cannot reach its backend reports itself stale
// ([Config.Stale]); its last good keys stay.
//
// This package imports no Consul code; the Consul KV source lives in
// [github.com/vitamin-go/vitamin/config/consul].
package config
