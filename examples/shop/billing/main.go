package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vitamin-go/vitamin/examples/shop/events"
	"github.com/vitamin-go/vitamin/examples/shop/platform"
	"github.com/vitamin-go/vitamin/messaging"
)

func main() {
	port := flag.Int("port", 8083, "port to listen on, on 127.0.0.1")
	flag.Parse()
	if err := run(*port); err != nil {
		fmt.Fprintln(os.Stderr, "billing:", err)
		os.Exit(1)
	}
}

func run(port int) error {
	ctx := context.Background()
	svc, err := platform.Start(ctx, "billing", fmt.Sprintf("billing-%d", port))
	if err != nil {
		return err
	}
	defer svc.Close()

	nc, js, err := svc.JetStream(ctx, events.Streams)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := messaging.NewKVStore(ctx, js, messaging.KVStoreConfig{Bucket: "billing_processed"})
	if err != nil {
		return err
	}

	var (
		mu      sync.Mutex
		charged = map[string]int{} // order ID → times charged
	)
	handle := messaging.Typed(func(ctx context.Context, m *messaging.Message, e events.OrderCreatedEvent) error {
		mu.Lock()
		charged[e.OrderID]++
		mu.Unlock()
		svc.Log.InfoContext(ctx, "charged", "order", e.OrderID, "sku", e.SKU, "quantity", e.Quantity, "delivery", m.NumDelivered)
		return nil
	})
	consumer, err := messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{
		Stream:   events.Stream,
		Durable:  "billing",
		Subjects: []string{events.OrderCreated},
		AckWait:  10 * time.Second,
	}, handle, messaging.WithStore(store), messaging.WithLogger(svc.Log))
	if err != nil {
		return err
	}
	consumed := make(chan error, 1)
	go func() { consumed <- consumer.Run(ctx) }()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/charges", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		platform.WriteJSON(w, http.StatusOK, map[string]any{"orders": charged})
	})
	serveErr := svc.ServeHTTP(ctx, port, nil, mux)

	// Stop fetching, let in-flight charges finish, then leave.
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := consumer.Stop(sctx); err != nil {
		return err
	}
	if err := <-consumed; err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}
