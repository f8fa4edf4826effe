// Package consul is a live configuration source over Consul KV: it loads
// the keys under a prefix and follows them with blocking queries, using
// the ACL token and TLS settings of the Consul client configuration.
package consul
