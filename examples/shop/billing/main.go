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
	"github.com/vitamin-go/vitamin/service"
)

func main() {
	port := flag.Int("port", 8083, "port to listen on, on 127.0.0.1")
	flag.Parse()
	if err := run(platform.Config("billing", "", *port)); err != nil {
		fmt.Fprintln(os.Stderr, "billing:", err)
		os.Exit(1)
	}
}

func run(cfg service.Config) error {
	ctx := context.Background()
	svc, err := service.New(cfg)
	if err != nil {
		return err
	}
	log := svc.Logger()
	js, err := platform.JetStream(ctx, svc, events.Streams)
	if err != nil {
		return err
	}
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
		log.InfoContext(ctx, "charged", "order", e.OrderID, "sku", e.SKU, "quantity", e.Quantity, "delivery", m.NumDelivered)
		return nil
	})
	consumer, err := messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{
		Stream:   events.Stream,
		Durable:  "billing",
		Subjects: []string{events.OrderCreated},
		AckWait:  10 * time.Second,
	}, handle, messaging.WithStore(store), messaging.WithLogger(log))
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/charges", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		platform.WriteJSON(w, http.StatusOK, map[string]any{"orders": charged})
	})
	if err := svc.Add(service.WithHTTP(mux), service.WithConsumer(consumer)); err != nil {
		return err
	}
	return svc.Run(ctx)
}
