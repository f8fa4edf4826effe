package messaging

import (
	"context"
	"database/sql"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler processes one message. Returning nil acknowledges it; an error
// marked with resilience.Permanent (anything matching
// resilience.ErrPermanent), or one matching ErrUndecodable, dead-letters
// it; any other error redelivers it after a backoff. Handlers run on
// several goroutines at once.
type Handler func(ctx context.Context, m *Message) error

// Message is one delivery handed to a Handler. It is valid only during the
// handler call and is not safe for concurrent use, except InProgress.
type Message struct {
	// Subject the message was published to.
	Subject string
	// Header holds the message's headers; do not modify it. Its names are
	// as the publisher spelled them: use HeaderValue to find one in any
	// letter case.
	Header nats.Header
	// Data is the encoded payload.
	Data []byte
	// ID is the Nats-Msg-Id header (in any letter case), if any.
	ID string
	// Key is the idempotency key of this message.
	Key string
	// Caller is the publishing service (the Vitamin-Caller header, in any
	// letter case).
	Caller string
	// Stream and Sequence locate the message in its stream.
	Stream   string
	Sequence uint64
	// NumDelivered counts deliveries, this one included (1 the first time).
	NumDelivered uint64
	// Published is when the stream stored the message.
	Published time.Time

	msg     jetstream.Msg
	tx      *sql.Tx
	codec   Codec
	claim   Claim         // seen by the heartbeat
	started time.Duration // when the handler started, from Consumer.epoch
	// In an SQLStore batch: the batch, and whether this message's
	// savepoint was taken (when the handler first asked for Tx).
	batch     *sqlBatch
	savepoint bool
}

// HeaderValue returns the first value of the header key, matched exactly
// or, failing that, in any letter case ("content-type" finds
// "Content-Type"), and "" when the message has no such header.
func (m *Message) HeaderValue(key string) string { return headerGet(m.Header, key) }

// Decode decodes the payload into v with the consumer's codec, choosing
// the format by the Content-Type header (read in any letter case). The
// error matches ErrUndecodable (and resilience.ErrPermanent): return it
// from the handler to dead-letter the message.
func (m *Message) Decode(v any) error {
	ct := m.HeaderValue(HeaderContentType)
	if err := m.codec.Unmarshal(m.Data, ct, v); err != nil {
		return &DecodeError{ContentType: ct, Err: err}
	}
	return nil
}

// Tx returns the transaction of the SQL store's claim: the handler makes
// its business change in it, and the processed-key row commits or rolls
// back with it. It is nil with other stores. Do not commit or roll it back
// in the handler. In a batch (ConsumerConfig.CommitBatch) the transaction
// is the batch's: the first call takes a savepoint for this message, to
// which a failing handler's changes are rolled back.
func (m *Message) Tx() *sql.Tx {
	if m.batch != nil && !m.savepoint {
		m.savepoint = true
		m.batch.savepoint()
	}
	return m.tx
}

// InProgress tells the broker that the handler is still working, resetting
// its redelivery timer. The consumer already does this periodically; call
// it for finer control. It is safe to call from any goroutine during the
// handler call.
func (m *Message) InProgress() error { return m.msg.InProgress() }

// Typed adapts a function of a decoded payload to a Handler: it decodes
// each message into a new T and calls f. A payload that does not decode is
// dead-lettered.
func Typed[T any](f func(ctx context.Context, m *Message, v T) error) Handler {
	return func(ctx context.Context, m *Message) error {
		var v T
		if err := m.Decode(&v); err != nil {
			return err
		}
		return f(ctx, m, v)
	}
}
