package events

import "github.com/vitamin-go/vitamin/messaging"

// Streams are the JetStream streams of the shop: the order events, and the
// messages consumers gave up on.
var Streams = []messaging.StreamConfig{
	{Name: Stream, Subjects: []string{AllOrders}},
	{Name: DeadLetters, Subjects: []string{"deadletter.>"}},
}

// Stream is the JetStream stream that keeps the shop's order events.
const Stream = "ORDERS"

// Subjects of the order events.
const (
	OrderCreated = "orders.created"
	AllOrders    = "orders.>"
)

// DeadLetters is the stream that keeps messages consumers gave up on.
const DeadLetters = "DEADLETTER"

// OrderCreatedEvent says that an order was accepted. Its order ID is also
// the message ID, so a publish retried after a lost acknowledgement is
// stored once.
type OrderCreatedEvent struct {
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}
