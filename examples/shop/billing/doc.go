// Command billing charges each accepted order exactly once: an idempotent
// JetStream consumer of orders.created whose processed keys live in a
// JetStream key-value bucket, shared by all billing instances and kept
// across restarts. GET /v1/charges shows what it charged.
package main
