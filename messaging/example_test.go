package messaging_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func ExamplePublisher_Publish() {
	t := vitamintest.NewDetached("example")
	defer t.Close()
	srv := vitamintest.StartNATS(t) // a real NATS server with JetStream
	js, _ := jetstream.New(srv.Connect(t))
	ctx := context.Background()

	if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{
		Name: "orders", Subjects: []string{"orders.>"}, Duplicates: 10 * time.Minute,
	}); err != nil {
		panic(err)
	}
	pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{}, messaging.WithCaller("checkout"))
	if err != nil {
		panic(err)
	}
	type OrderPlaced struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	// Publishing twice with one message ID stores the event once.
	for range 2 {
		ack, err := pub.Publish(ctx, "orders.placed", OrderPlaced{ID: "o-42", Total: 1999},
			messaging.WithMsgID("order-placed-o-42"))
		if err != nil {
			panic(err)
		}
		fmt.Printf("stream %s, sequence %d, duplicate %v\n", ack.Stream, ack.Sequence, ack.Duplicate)
	}
	// Output:
	// stream orders, sequence 1, duplicate false
	// stream orders, sequence 1, duplicate true
}

func ExampleSQLStore() {
	t := vitamintest.NewDetached("example")
	defer t.Close()
	srv := vitamintest.StartNATS(t)
	pg := vitamintest.StartPostgres(t) // a fresh schema on the local PostgreSQL
	js, _ := jetstream.New(srv.Connect(t))
	ctx := context.Background()
	if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{Name: "orders", Subjects: []string{"orders.>"}}); err != nil {
		panic(err)
	}
	if _, err := pg.DB.ExecContext(ctx, "CREATE TABLE shipments (order_id TEXT PRIMARY KEY)"); err != nil {
		panic(err)
	}

	// The processed-key row and the business change commit together.
	store, err := messaging.NewSQLStore(ctx, pg.DB, messaging.SQLStoreConfig{})
	if err != nil {
		panic(err)
	}
	type OrderPlaced struct {
		ID string `json:"id"`
	}
	handled := make(chan string)
	consumer, err := messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{Stream: "orders", Durable: "shipping"},
		messaging.Typed(func(ctx context.Context, m *messaging.Message, o OrderPlaced) error {
			if _, err := m.Tx().ExecContext(ctx, "INSERT INTO shipments (order_id) VALUES ($1)", o.ID); err != nil {
				return err // rolled back with the key: the message is retried
			}
			handled <- o.ID
			return nil
		}), messaging.WithStore(store))
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- consumer.Run(runCtx) }()

	pub, _ := messaging.NewPublisher(js, messaging.PublisherConfig{})
	for _, id := range []string{"o-1", "o-2"} {
		if _, err := pub.Publish(ctx, "orders.placed", OrderPlaced{ID: id}, messaging.WithMsgID("placed-"+id)); err != nil {
			panic(err)
		}
	}
	// Workers handle messages concurrently: either may ship first.
	fmt.Println("shipped", <-handled)
	fmt.Println("shipped", <-handled)
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	var n int
	_ = pg.DB.QueryRowContext(ctx, "SELECT count(*) FROM shipments").Scan(&n)
	fmt.Println("shipments:", n)
	// Unordered output:
	// shipped o-1
	// shipped o-2
	// shipments: 2
}

func ExampleOutbox() {
	t := vitamintest.NewDetached("example")
	defer t.Close()
	srv := vitamintest.StartNATS(t)
	pg := vitamintest.StartPostgres(t) // a fresh schema on the local PostgreSQL
	js, _ := jetstream.New(srv.Connect(t))
	ctx := context.Background()
	if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{Name: "orders", Subjects: []string{"orders.>"}}); err != nil {
		panic(err)
	}
	if _, err := pg.DB.ExecContext(ctx, "CREATE TABLE orders (id TEXT PRIMARY KEY)"); err != nil {
		panic(err)
	}
	outbox, err := messaging.NewOutbox(ctx, pg.DB, messaging.OutboxConfig{}, messaging.WithCaller("orders"))
	if err != nil {
		panic(err)
	}
	type OrderPlaced struct {
		ID string `json:"id"`
	}
	// The order and its event commit together, or neither does.
	place := func(id string, commit bool) {
		tx, err := pg.DB.BeginTx(ctx, nil)
		if err != nil {
			panic(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id) VALUES ($1)", id); err != nil {
			panic(err)
		}
		if _, err := outbox.Publish(ctx, tx, "orders.placed", OrderPlaced{ID: id}); err != nil {
			panic(err)
		}
		if commit {
			if err := tx.Commit(); err != nil {
				panic(err)
			}
		}
	}
	place("o-1", true)
	place("o-2", false) // rolled back: never published
	place("o-3", true)

	// One relay per service instance; the commit wakes them.
	relay, err := messaging.NewRelay(outbox, js, messaging.RelayConfig{})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- relay.Run(runCtx) }()

	cons, _ := js.OrderedConsumer(ctx, "orders", jetstream.OrderedConsumerConfig{})
	for range 2 {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			panic(err)
		}
		fmt.Println(m.Subject(), string(m.Data()), "from", m.Headers().Get(messaging.HeaderCaller))
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// orders.placed {"id":"o-1"} from orders
	// orders.placed {"id":"o-3"} from orders
}
