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
// context headers. Publish waits for the stream's acknowledgement;
// PublishAsync does not, with at most PublisherConfig.MaxPending
// acknowledgements outstanding. Transient failures are retried with
// jittered exponential backoff (PublisherConfig.Backoff, MaxBackoff) under
// the same message ID, so a retry never stores a message twice.
//
// # Transactional outbox
//
// A service that commits a change and then publishes its event loses the
// event if it crashes in between, and publishes an event for a change
// that rolled back if it publishes first. Outbox.Publish instead writes
// the event into a table in the caller's transaction (*sql.Tx), with the
// same headers a Publisher sets: the event exists exactly when the change
// committed. A Relay publishes committed events to JetStream with the
// event's ID as Nats-Msg-Id and marks them sent:
//
//   - several relays may run on one table, one per service instance: each
//     round locks the rows it publishes (SELECT … FOR UPDATE SKIP LOCKED),
//     so every event is published by one relay;
//   - a relay that dies after publishing and before marking leaves the
//     rows to be published again under the same IDs, which the stream's
//     duplicates window drops, and after that a consumer's idempotency
//     store: none is lost, none takes effect twice;
//   - on PostgreSQL the commit wakes the relays (LISTEN/NOTIFY, with the
//     pgx driver); polling every RelayConfig.PollInterval is the fallback,
//     and the only way on MySQL;
//   - vitamin.messaging.outbox.delay records the time from writing an
//     event to the stream's acknowledgement of it;
//   - published events older than RelayConfig.Retention are deleted.
//
// With an SQLStore on the consuming side, an order committed in one
// service takes effect exactly once in another.
//
// # Peers in other languages
//
// NATS header names are case-sensitive, but a consumer finds every header
// it reads (Content-Type, Nats-Msg-Id, Vitamin-Caller, the trace headers)
// in any letter case, and Message.HeaderValue does the same for yours.
// DefaultCodec reads Content-Type as a media type, so
// "application/json; charset=utf-8", "APPLICATION/JSON" and
// "application/vnd.acme.order+json" are JSON. The broker itself
// deduplicates only on Nats-Msg-Id spelled exactly so. The headers, their
// values and the dead-letter headers are listed in docs/wire.md.
//
// # Settings
//
// What a person writes in a file is a Config struct with yaml and json
// keys (PublisherConfig, ConsumerConfig, StreamConfig, OutboxConfig,
// RelayConfig and the stores' configs), with documented defaults; an invalid value fails at
// construction with a *FieldError naming it, which matches
// ErrInvalidConfig. What only code can give is an option, typed by where
// it applies: a PublisherOption (WithCaller) cannot be passed to
// NewConsumer, nor a ConsumerOption (WithStore, WithKeyFunc) to
// NewPublisher; an Option (WithLogger, WithMeterProvider, WithCodec,
// WithTracing, WithoutTracing) goes to both.
//
// # Consuming
//
// A Consumer runs a Handler over a durable pull consumer with several
// workers:
//
//   - a message is acknowledged only after the handler returned nil;
//   - any other error redelivers it with exponential backoff (NAK with a
//     delay from ConsumerConfig.Backoff doubling up to MaxBackoff, each
//     jittered to between half and all of it, so that messages that failed
//     together come back spread out);
//   - an error marked with resilience.Permanent, an undecodable payload
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
//   - SQLStore (database/sql; PostgreSQL, or MySQL 8 and MariaDB 10.6
//     with DialectMySQL): the handler gets the claim's transaction
//     (Message.Tx) and the processed-key row is inserted in it, so the
//     business change and the record of the message commit or roll back
//     together: an exactly-once effect.
//
// The durable stores settle messages in batches of up to
// ConsumerConfig.CommitBatch, waiting at most CommitWait for a batch to
// fill. The SQLStore runs a batch in one transaction: the keys are
// inserted in one statement, each handler gets a savepoint when it first
// calls Message.Tx, a failing handler is rolled back to its savepoint and
// its key removed, so that only its message is redelivered (or
// dead-lettered); the batch commits once, and its messages are
// acknowledged after the commit. A crash between the commit and the
// acknowledgements redelivers them, and each finds its key done. The
// KVStore sends a batch's claims together and each mark as soon as its
// handler succeeded, and waits for their acknowledgements once.
//
// What a store costs, against a bare JetStream consumer that acks each
// message (BenchmarkConsumerThroughput, 8 workers, on one 2-core host
// running both the server and the consumer): the MemoryStore keeps about
// 0.8× its rate; the SQLStore 0.4–0.5× (its batch commits once); the
// KVStore about 0.3×, because each message adds two writes to the bucket,
// the claim and the mark, each stored and answered by the server, to the
// bare consumer's delivery and ack. Where throughput matters and the
// service has a database, prefer the SQLStore.
//
// nats.go v1.55's Consume can skip a pull request when the last message
// of the outstanding ones arrives while it is still sending the previous
// request; it then waits for two missed heartbeats before pulling again.
// The consumer pulls with a 1s heartbeat, so such a pause lasts 2s
// instead of 30s (TestConsumeStall reproduces it).
//
// # Observability
//
// Metrics go through the OpenTelemetry metric API (no-op unless the
// application sets a provider): vitamin.messaging.processed, .duplicates,
// .retries, .dead_lettered, .handler.duration, .published,
// .publish_failed, .outbox.published and .outbox.delay. Spans are made by
// package tracing/tracingnats and follow the OpenTelemetry messaging
// conventions: the publisher's (or Outbox.Publish's) producer
// span "publish <subject>" travels in the message headers, and the
// consumer runs each handler in a consumer span "process <subject>", its
// child, with messaging.system, messaging.destination.name,
// messaging.operation.name and .type, messaging.message.id and
// messaging.consumer.group.name (the durable consumer). WithTracing passes
// options to the tracingnats.Tracer (tracingnats.WithTelemetry);
// WithoutTracing leaves spans and trace headers out. Logging is an
// optional *slog.Logger.
package messaging
