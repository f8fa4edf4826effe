package messaging

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// Header names Vitamin writes on messages and dead letters. Vitamin writes
// them in the case shown and reads them in any letter case (NATS header
// names are case-sensitive, but peers in other languages spell them as
// they like: "content-type", "nats-msg-id"). Only the broker's own
// deduplication needs Nats-Msg-Id spelled exactly so.
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

// headerGet returns the first value of the header key in h, matched
// exactly or, failing that, in any letter case; "" when it is absent. It
// is the one lookup of a header Vitamin reads on a message (the same one
// the trace headers go through, tracingnats.HeaderCarrier).
func headerGet(h nats.Header, key string) string {
	return tracingnats.HeaderCarrier(h).Get(key)
}

// headerSet sets the header key in h to value, removing every other
// letter-case variant of key, so that a message never carries two values
// for one header.
func headerSet(h nats.Header, key, value string) {
	tracingnats.HeaderCarrier(h).Set(key, value)
}
