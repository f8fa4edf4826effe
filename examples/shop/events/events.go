// Package events holds the messages the shop's services exchange.
package events

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
