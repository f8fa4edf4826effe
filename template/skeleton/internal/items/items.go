package items

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/resilience"
	skeletonv1 "github.com/vitamin-go/vitamin/template/skeleton/api/skeleton/v1"
)

// Settings are the domain's own settings: the "items" section of the
// configuration file.
type Settings struct {
	// Pricing is the name of the downstream service that prices items.
	// Default "pricing".
	Pricing string `yaml:"pricing" json:"pricing"`
	// DefaultPriceCents is the price given when pricing cannot answer
	// (the fallback). It is a dynamic property: a change in the file or in
	// Consul KV (items/default_price_cents) applies while the service
	// runs. Default 100.
	DefaultPriceCents int `yaml:"default_price_cents" json:"default_price_cents"`
}

// Defaults returns the default Settings.
func Defaults() Settings { return Settings{Pricing: "pricing", DefaultPriceCents: 100} }

// Events: the stream that keeps them, and the subject of each.
const (
	Stream      = "SKELETON"
	ItemCreated = "skeleton.item.created"
)

// Streams are the JetStream streams the service needs: its events.
var Streams = []messaging.StreamConfig{{Name: Stream, Subjects: []string{"skeleton.>"}}}

// EventIDHeader carries an event's ID, the consumer's idempotency key. The
// broker drops a second publish with the same Nats-Msg-Id within its
// duplicate window; the key also catches a copy published later (a replay,
// an outbox relay that retried) or delivered again.
const EventIDHeader = "Event-Id"

// ItemCreatedEvent says that an item was created.
type ItemCreatedEvent struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// Item is an item as the HTTP API shows it.
type Item struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	PriceCents     int64  `json:"price_cents"`
	PriceEstimated bool   `json:"price_estimated"`
}

// Service is the domain: items in memory, priced by the pricing service
// through pricing (an *http.Client from client.NewHTTP, which applies the
// resilience policies), with a fallback to the default price. It is safe
// for concurrent use.
type Service struct {
	skeletonv1.UnimplementedSkeletonServer

	log          *slog.Logger
	pricing      *http.Client
	pricingName  string
	defaultPrice func() int
	publish      func(ctx context.Context, e ItemCreatedEvent) error

	mu      sync.Mutex
	items   map[string]Item
	created int // items counted by the consumer
}

// New returns the domain service. defaultPrice reads the fallback price
// (a dynamic property's Get); publish publishes an event.
func New(log *slog.Logger, s Settings, pricing *http.Client,
	defaultPrice func() int, publish func(ctx context.Context, e ItemCreatedEvent) error) *Service {
	return &Service{
		log: log, pricing: pricing, pricingName: s.Pricing,
		defaultPrice: defaultPrice, publish: publish, items: map[string]Item{},
	}
}

// Publish returns the function that publishes an event with p, for New.
func Publish(p *messaging.Publisher) func(ctx context.Context, e ItemCreatedEvent) error {
	return func(ctx context.Context, e ItemCreatedEvent) error {
		_, err := p.Publish(ctx, ItemCreated, e, messaging.WithMsgID(e.ID), messaging.WithHeader(EventIDHeader, e.ID))
		return err
	}
}

// Handler returns the HTTP API:
//
//	POST /v1/items        {"name": "tea"} → 201 and the item
//	GET  /v1/items/{id}   the item, or 404
//	GET  /v1/stats        {"items_created": n}, as counted by the consumer
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/items", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `want {"name": "..."}`})
			return
		}
		item, err := s.Create(r.Context(), in.Name)
		if err != nil {
			s.log.ErrorContext(r.Context(), "create failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, item)
	})
	mux.HandleFunc("GET /v1/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		item, ok := s.Get(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no item " + r.PathValue("id")})
			return
		}
		writeJSON(w, http.StatusOK, item)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"items_created": s.Created()})
	})
	return mux
}

// Create prices a new item, keeps it and publishes ItemCreated.
func (s *Service) Create(ctx context.Context, name string) (Item, error) {
	price, estimated := s.price(ctx, name)
	item := Item{ID: newID(), Name: name, PriceCents: price, PriceEstimated: estimated}
	s.mu.Lock()
	s.items[item.ID] = item
	s.mu.Unlock()
	if err := s.publish(ctx, ItemCreatedEvent{ID: item.ID, Name: name, PriceCents: price}); err != nil {
		return Item{}, fmt.Errorf("publish %s: %w", ItemCreated, err)
	}
	s.log.InfoContext(ctx, "item created", "id", item.ID, "price_cents", price, "estimated", estimated)
	return item, nil
}

// Get returns the item with the given ID.
func (s *Service) Get(id string) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	item, ok := s.items[id]
	return item, ok
}

// GetItem serves the gRPC API.
func (s *Service) GetItem(_ context.Context, req *skeletonv1.GetItemRequest) (*skeletonv1.Item, error) {
	item, ok := s.Get(req.GetId())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no item %q", req.GetId())
	}
	return &skeletonv1.Item{Id: item.ID, Name: item.Name, PriceCents: item.PriceCents, PriceEstimated: item.PriceEstimated}, nil
}

// price asks the pricing service, by name; the client retries on
// another instance, within the policy's budget and breaker. When that
// fails (no instance, timeouts, an open circuit…), the fallback is the
// default price, marked estimated.
func (s *Service) price(ctx context.Context, name string) (cents int64, estimated bool) {
	cents, err := s.askPricing(ctx, name)
	if err != nil {
		s.log.WarnContext(ctx, "pricing unavailable: default price", "err", err,
			"circuit_open", errors.Is(err, resilience.ErrCircuitOpen))
		return int64(s.defaultPrice()), true
	}
	return cents, false
}

func (s *Service) askPricing(ctx context.Context, name string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.pricingName+"/v1/prices/"+url.PathEscape(name), nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.pricing.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("pricing answered %s", resp.Status)
	}
	var a struct {
		Cents int64 `json:"cents"`
	}
	return a.Cents, json.NewDecoder(resp.Body).Decode(&a)
}

// Handle is the consumer's handler of ItemCreated: it counts the item.
// The consumer runs it once per event ID (see EventIDHeader), however
// often the event is delivered.
func (s *Service) Handle(ctx context.Context, m *messaging.Message, e ItemCreatedEvent) error {
	s.mu.Lock()
	s.created++
	s.mu.Unlock()
	s.log.InfoContext(ctx, "item counted", "id", e.ID, "delivery", m.NumDelivered)
	return nil
}

// EventKey is the consumer's idempotency key: the event's ID.
func EventKey(m *messaging.Message) string { return m.HeaderValue(EventIDHeader) }

// Created returns how many items the consumer has counted.
func (s *Service) Created() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
