// Package messaging publishes events to NATS JetStream and consumes them
// without losing or double-processing any.
//
// # Delivery
//
// A message is acknowledged only after its handler succeeded. A retryable
// failure is redelivered with backoff; a permanent failure, an undecodable
// payload or exhausted deliveries are copied to a dead-letter subject with
// the reason and origin in headers, then terminated.
//
// # Idempotency
//
// Each message is identified by its Nats-Msg-Id header, or by a key
// function. The key is claimed with a lease before the handler runs, marked
// done after it succeeded and released when it failed. Stores: memory (one
// process), JetStream KV (shared, survives restarts) and SQL, where the
// processed-key row is written in the same transaction as the business
// change.
package messaging
