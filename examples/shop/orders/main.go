package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	configconsul "github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/examples/shop/events"
	"github.com/vitamin-go/vitamin/examples/shop/platform"
	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service"
)

// policies protect the calls to inventory: a short timeout per attempt,
// up to three attempts (each on another instance) within a retry budget,
// and a breaker that stops calling a failing dependency for a while.
// They are the defaults of the keys under resilience (Consul KV
// config/orders/resilience/..., ORDERS_RESILIENCE_...), followed live.
var policies = resilience.Config{Default: resilience.Policy{
	Timeout:        500 * time.Millisecond,
	Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: 10 * time.Millisecond, Jitter: 0.2},
	Budget:         &resilience.Budget{Ratio: 0.2},
	CircuitBreaker: &resilience.CircuitBreaker{FailureRate: 0.5, MinRequests: 10, Window: 10 * time.Second, OpenFor: 5 * time.Second},
}}

func main() {
	port := flag.Int("port", 8080, "port to listen on, on 127.0.0.1")
	flag.Parse()
	if err := run(platform.Config("orders", "", *port)); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
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

	// Dynamic properties and the call policies, live: defaults < Consul KV
	// < ORDERS_* variables.
	kv, err := configconsul.New(configconsul.Config{Prefix: "config/orders/"},
		configconsul.WithClient(svc.Consul()), configconsul.WithLogger(log))
	if err != nil {
		return err
	}
	props, err := config.Load(ctx, config.Layers{
		Defaults:  map[string]any{"max_quantity": 10, "resilience": policies},
		Sources:   []config.Source{kv},
		EnvPrefix: "ORDERS_",
	}, config.WithLogger(log))
	if err != nil {
		return err
	}
	maxQuantity := config.Int(props, "max_quantity", 10, config.Between(1, 1000))
	maxQuantity.OnChange(func(old, new int) { log.Info("max_quantity changed", "old", old, "new", new) })

	registry, err := resilience.NewRegistry(policies, resilience.WithLogger(log))
	if err != nil {
		return err
	}
	if err := config.Follow(props, "resilience", registry.Update); err != nil {
		return err
	}

	// The inventory service, by name.
	watcher, err := consul.NewWatcher(svc.Consul(), consul.WatcherConfig{}, consul.WithLogger(log))
	if err != nil {
		return err
	}
	inventory, err := client.NewHTTP("inventory", client.Config{},
		client.WithWatcher(watcher), client.WithPolicies(registry),
		client.WithCaller("orders"), client.WithLogger(log))
	if err != nil {
		return err
	}

	// Events for billing.
	js, err := platform.JetStream(ctx, svc, events.Streams)
	if err != nil {
		return err
	}
	pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{}, messaging.WithCaller("orders"), messaging.WithLogger(log))
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			SKU      string `json:"sku"`
			Quantity int    `json:"quantity"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.SKU == "" || in.Quantity < 1 {
			platform.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": `want {"sku": "...", "quantity": n} with n ≥ 1`})
			return
		}
		if limit := maxQuantity.Get(); in.Quantity > limit {
			platform.WriteJSON(w, http.StatusUnprocessableEntity, map[string]string{
				"error": fmt.Sprintf("quantity %d is above the limit of %d (config key max_quantity)", in.Quantity, limit)})
			return
		}
		stock, err := checkStock(r.Context(), inventory, in.SKU)
		switch {
		case errors.Is(err, resilience.ErrCircuitOpen):
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inventory is failing; try again shortly"})
			return
		case err != nil:
			log.ErrorContext(r.Context(), "stock check failed", "err", err)
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "inventory unavailable: " + err.Error()})
			return
		case stock.Available < in.Quantity:
			platform.WriteJSON(w, http.StatusConflict, map[string]any{"error": "not enough stock", "available": stock.Available})
			return
		}
		id := newOrderID()
		ev := events.OrderCreatedEvent{OrderID: id, SKU: in.SKU, Quantity: in.Quantity}
		if _, err := pub.Publish(r.Context(), events.OrderCreated, ev, messaging.WithMsgID(id)); err != nil {
			log.ErrorContext(r.Context(), "publish failed", "order", id, "err", err)
			platform.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not record the order: " + err.Error()})
			return
		}
		log.InfoContext(r.Context(), "order accepted", "order", id, "stock_checked_by", stock.Instance)
		platform.WriteJSON(w, http.StatusCreated, map[string]any{"order_id": id, "stock_checked_by": stock.Instance})
	})

	// Closed in reverse order once the server has drained: the publisher
	// (pending publishes flushed), the inventory client, the watcher, and
	// last the broker connection (added by platform.JetStream).
	err = svc.Add(
		service.WithHTTP(mux),
		service.WithConsumer(service.RunFunc(props.Watch)),
		service.WithCloser(service.CloseIO(watcher)),
		service.WithCloser(service.CloseFunc(func(context.Context) error { return client.CloseHTTP(inventory) })),
		service.WithCloser(pub),
	)
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

type stockAnswer struct {
	Available int    `json:"available"`
	Instance  string `json:"instance"`
}

// checkStock asks inventory, by service name, how much of sku is left.
func checkStock(ctx context.Context, inventory *http.Client, sku string) (stockAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://inventory/v1/stock/"+sku, nil)
	if err != nil {
		return stockAnswer{}, err
	}
	resp, err := inventory.Do(req)
	if err != nil {
		return stockAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return stockAnswer{}, fmt.Errorf("inventory answered %s", resp.Status)
	}
	var s stockAnswer
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func newOrderID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "ord-" + hex.EncodeToString(b[:])
}
