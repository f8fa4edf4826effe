// Package messaging publishes events to NATS JetStream and consumes them
// without losing or double-processing any.
//
// # Streams
//
// EnsureStream creates a stream, or updates it, with a duplicates window:
// a second publish with the same Nats-Msg-Id inside the window is dropped
// by the broker. A configuration the existing stream cannot take is
// reported as a *StreamConflictError naming the fields.
//
// # Publishing
//
// A Publisher encodes typed payloads with a Codec (JSON by default,
// protobuf for proto messages), gives every message an ID (WithMsgID, or a
// generated one), and sets the Content-Type, Vitamin-Caller and trace
// context headers (through the OpenTelemetry propagator). Publish waits
// for the stream's acknowledgement; PublishAsync does not, with at most
// PublisherConfig.MaxPending acknowledgements outstanding. Transient
// failures are retried with backoff under the same message ID, so a retry
// never stores a message twice.
//
// # Consuming
//
// A Consumer runs a Handler over a durable pull consumer with several
// workers:
//
//   - a message is acknowledged only after the handler returned nil;
//   - any other error redelivers it with exponential backoff (NAK with a
//     delay);
//   - an error wrapped with Permanent, an undecodable payload
//     (Message.Decode, Typed) or the last of ConsumerConfig.MaxDeliver
//     deliveries copies the message to the dead-letter subject, with the
//     reason, the error, the origin subject, stream, sequence and delivery
//     count in headers, and then terminates it. If the dead letter cannot
//     be stored, the message is redelivered instead: nothing is dropped
//     silently;
//   - handlers running longer than a third of AckWait send in-progress
//     signals, so the broker does not redeliver work that is still running;
//   - Stop (or cancelling Run's context) stops fetching, waits for the
//     running handlers and returns.
//
// # Idempotency
//
// On by default. The key is the Nats-Msg-Id header (WithKeyFunc to derive
// another; the stream sequence when there is neither). Before the handler,
// the key is claimed with a lease; after success it is marked done; after
// a failure it is released. It is never marked done before the work is
// done, so a failed attempt is retried rather than forgotten. Stores:
//
//   - MemoryStore: bounded, with a TTL, for one process;
//   - KVStore: a JetStream key-value bucket shared by every instance and
//     surviving restarts; the first claim wins (KeyValue.Create) and a
//     claim has a per-key TTL, so a crashed instance's key frees itself;
//   - SQLStore (database/sql): the handler gets the claim's transaction
//     (Message.Tx) and the processed-key row is inserted in it, so the
//     business change and the record of the message commit or roll back
//     together: an exactly-once effect.
//
// # Observability
//
// Metrics go through the OpenTelemetry metric API (no-op unless the
// application sets a provider): vitamin.messaging.processed, .duplicates,
// .retries, .dead_lettered, .handler.duration, .published and
// .publish_failed. The consumer continues the publisher's trace, with the
// carrier of package tracing/tracingnats. Logging is an optional
// *slog.Logger.
package messaging
