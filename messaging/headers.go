package messaging

import (
	"github.com/nats-io/nats.go/jetstream"
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
