package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/service"
	skeletonv1 "github.com/vitamin-go/vitamin/template/skeleton/api/skeleton/v1"
	"github.com/vitamin-go/vitamin/template/skeleton/internal/app"
	"github.com/vitamin-go/vitamin/template/skeleton/internal/items"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// started is the service running in-process on the test kit: an in-memory
// registry and an embedded NATS server.
type started struct {
	registry *vitamintest.Registry
	nats     *vitamintest.NATS
	http     *http.Client
}

// projectConfig is the project's config.yaml.
var projectConfig = filepath.Join("..", "..", "config.yaml")

// start runs the service with the configuration file (the project's
// config.yaml unless a test gives another), on free loopback ports,
// registered in an in-memory registry, on an embedded NATS server, and
// stops it when the test ends.
func start(t *testing.T, file ...string) *started {
	t.Helper()
	registry, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = registry.Close() })
	n := vitamintest.StartNATS(t)
	t.Setenv("SKELETON_NATS_URL", n.URL)
	run(t, append(file, projectConfig)[0], app.WithRegistry(registry))
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := len(registry.Instances(app.Name)); n != 2 {
			return fmt.Errorf("%d instances registered, want 2 (HTTP and gRPC)", n)
		}
		return nil
	})

	hc, err := client.NewHTTP(app.Name, client.Config{}, client.WithWatcher(registry, discovery.WithTags(service.ProtocolHTTP)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseHTTP(hc) })
	return &started{registry: registry, nats: n, http: hc}
}

// run runs the service on free loopback ports until the test ends, and
// attaches its log to the output of a failed test.
func run(t *testing.T, file string, opts ...app.Option) {
	t.Helper()
	t.Setenv("SKELETON_SERVICE_HTTP__ADDR", "127.0.0.1:0")
	t.Setenv("SKELETON_SERVICE_GRPC__ADDR", "127.0.0.1:0")
	t.Setenv("SKELETON_SERVICE_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("SKELETON_SERVICE_SHUTDOWN_PROPAGATION", "-1ns")
	var logs vitamintest.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the service's log:\n%s", logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := app.New(ctx, file, append(opts, app.WithLogger(log), app.WithoutSignals())...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (s *started) create(t *testing.T, name string) items.Item {
	t.Helper()
	item, err := s.post(name)
	if err != nil {
		t.Fatal(err)
	}
	return item
}

// tryCreate is create for a condition: a failed call gives the zero Item.
func (s *started) tryCreate(name string) items.Item {
	item, _ := s.post(name)
	return item
}

func (s *started) post(name string) (items.Item, error) {
	var item items.Item
	resp, err := s.http.Post("http://"+app.Name+"/v1/items", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		return item, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return item, fmt.Errorf("POST /v1/items: %s", resp.Status)
	}
	return item, json.NewDecoder(resp.Body).Decode(&item)
}

func TestHTTPAndGRPC(t *testing.T) {
	s := start(t)

	// A pricing instance, found by name in the registry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pricing := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, `{"cents": 250}`)
	})}
	go func() { _ = pricing.Serve(ln) }()
	t.Cleanup(func() { _ = pricing.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	reg, err := s.registry.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
		ID: "pricing-1", Service: "pricing", Address: "127.0.0.1", Port: port, Tags: []string{service.ProtocolHTTP},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// The client sees the new instance as soon as its watch does.
	var priced items.Item
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if priced = s.create(t, "tea"); priced.PriceCents != 250 || priced.PriceEstimated {
			return fmt.Errorf("with pricing up: %+v, want 250 cents, not estimated", priced)
		}
		return nil
	})

	// Without pricing: the fallback, the default price of config.yaml.
	if err := reg.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if item := s.create(t, "cocoa"); !item.PriceEstimated || item.PriceCents != 100 {
			return fmt.Errorf("without pricing: %+v, want 100 cents, estimated", item)
		}
		return nil
	})

	// The same item over gRPC, through Vitamin's client.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.NewGRPC(ctx, app.Name, client.Config{}, client.WithWatcher(s.registry, discovery.WithTags(service.ProtocolGRPC)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := skeletonv1.NewSkeletonClient(conn)
	got, err := api.GetItem(ctx, &skeletonv1.GetItemRequest{Id: priced.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetName() != "tea" || got.GetPriceCents() != 250 {
		t.Errorf("GetItem = %v, want tea at 250", got)
	}
	if _, err := api.GetItem(ctx, &skeletonv1.GetItemRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetItem(nope): %v, want NotFound", err)
	}

	// Health, on the HTTP listener.
	inst := s.registry.Instances(app.Name)
	for _, i := range inst {
		if i.Tags[0] != service.ProtocolHTTP {
			continue
		}
		for _, path := range []string{service.LivezPath, service.ReadyzPath} {
			resp, err := http.Get("http://" + net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s: %s", path, resp.Status)
			}
		}
	}
}

// TestConsumerOncePerEvent delivers one event twice, as a replay or an
// outbox relay that retried would, and sees one effect.
func TestConsumerOncePerEvent(t *testing.T) {
	s := start(t)
	js, err := jetstream.New(s.nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, items.Stream, app.Name)
	if err != nil {
		t.Fatal(err)
	}
	event := []byte(`{"id":"evt-1","name":"tea","price_cents":100}`)
	for i, msgID := range []string{"first", "second"} { // distinct Nats-Msg-Ids: the broker keeps both
		m := &nats.Msg{Subject: items.ItemCreated, Data: event, Header: nats.Header{}}
		m.Header.Set(nats.MsgIdHdr, msgID)
		m.Header.Set(items.EventIDHeader, "evt-1")
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		vitamintest.Eventually(t, 10*time.Second, func() error {
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.AckFloor.Stream < ack.Sequence {
				return fmt.Errorf("delivery %d (stream sequence %d) not acknowledged yet", i+1, ack.Sequence)
			}
			return nil
		})
	}
	resp, err := s.http.Get("http://" + app.Name + "/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stats struct {
		ItemsCreated int `json:"items_created"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	if stats.ItemsCreated != 1 {
		t.Errorf("items_created = %d after two deliveries of one event, want 1", stats.ItemsCreated)
	}
}

// TestDynamicProperty changes items.default_price_cents in the file while
// the service runs: new items get the new fallback price, without a
// restart (Consul KV, when there is Consul, is a live layer the same way).
func TestDynamicProperty(t *testing.T) {
	orig, err := os.ReadFile(projectConfig)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, file)
	if item := s.create(t, "tea"); item.PriceCents != 100 || !item.PriceEstimated {
		t.Fatalf("without pricing: %+v, want the default price, 100", item)
	}
	changed := strings.Replace(string(orig), "default_price_cents: 100", "default_price_cents: 250", 1)
	if err := os.WriteFile(file, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if item := s.create(t, "tea"); item.PriceCents != 250 {
			return fmt.Errorf("after the change: %d cents, want 250", item.PriceCents)
		}
		return nil
	})
}

func TestBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("items:\n  default_price_centz: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := app.New(context.Background(), file, app.WithLogger(nil))
	if err == nil || !strings.Contains(err.Error(), "items.default_price_centz") {
		t.Errorf("New with a misspelt key: %v, want an error naming items.default_price_centz", err)
	}
}
