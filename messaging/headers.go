package messaging

import (
	"net/textproto"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
)

// Header names Vitamin writes on messages and dead letters.
const (
	// HeaderMsgID carries the message ID; the broker drops a second
	// publish with the same ID inside the stream's duplicates window.
	HeaderMsgID = jetstream.MsgIDHeader
	// HeaderContentType names the codec's content type.
	HeaderContentType = "Content-Type"
	// HeaderCaller names the publishing service.
	HeaderCaller = "Vitamin-Caller"

	// HeaderDeadLetterReason says why a message was dead-lettered:
	// ReasonPermanent, ReasonUndecodable or ReasonMaxDeliver.
	HeaderDeadLetterReason = "Vitamin-Dead-Letter-Reason"
	// HeaderDeadLetterError is the handler's error text.
	HeaderDeadLetterError = "Vitamin-Dead-Letter-Error"
	// HeaderOriginSubject is the subject the message was published to.
	HeaderOriginSubject = "Vitamin-Origin-Subject"
	// HeaderOriginStream is the stream the message came from.
	HeaderOriginStream = "Vitamin-Origin-Stream"
	// HeaderOriginSequence is the message's stream sequence.
	HeaderOriginSequence = "Vitamin-Origin-Sequence"
	// HeaderOriginConsumer is the durable consumer that gave up.
	HeaderOriginConsumer = "Vitamin-Origin-Consumer"
	// HeaderOriginMsgID is the original Nats-Msg-Id, if any.
	HeaderOriginMsgID = "Vitamin-Origin-Msg-Id"
	// HeaderDeliveries is the number of deliveries the message had.
	HeaderDeliveries = "Vitamin-Deliveries"
)

// Dead-letter reasons, the values of HeaderDeadLetterReason.
const (
	ReasonPermanent   = "permanent"
	ReasonUndecodable = "undecodable"
	ReasonMaxDeliver  = "max-deliver"
)

// headerCarrier adapts nats.Header to propagation.TextMapCarrier. Reads
// ignore letter case. (To be merged with tracing's NATS carrier.)
type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	if v := c[textproto.CanonicalMIMEHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && equalFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
