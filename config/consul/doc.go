// Package consul is a live configuration source over Consul KV, for
// [github.com/vitamin-go/vitamin/config]: it loads the keys under a prefix
// and follows them with blocking queries, using the ACL token and TLS
// settings of the Consul client configuration for every request.
//
// # Keys
//
// Under the prefix "config/orders/", the key "config/orders/db/pool/max"
// is the config key "db.pool.max"; its value is the raw string, parsed by
// the property that reads it. Folder keys (ending in "/") are ignored, and
// a missing prefix is an empty layer.
//
// # Following changes
//
// [Source.Watch] runs blocking queries on the prefix from the index of the
// last answer. When Consul's index goes backwards, or after an error (a
// restarted agent starts its index again), it reads afresh from index 0.
// Failed queries are retried with exponential backoff and jitter, from
// Config.Backoff up to Config.MaxBackoff; meanwhile the source is stale
// ([Source.Stale]) and the configuration keeps the last good keys. Watch
// stops when its context is done. The Consul discovery watcher runs the
// same loop.
//
// # Settings
//
// [Config] is plain data with yaml and json keys (prefix, wait_time,
// backoff, max_backoff, load_timeout); the Consul client's own settings
// come from Config.Consul or [WithClient]. Invalid settings fail [New]
// with a [*config.FieldError] matching [config.ErrInvalidConfig] that
// names the field.
package consul
