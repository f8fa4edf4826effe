package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func getState(t *testing.T, addr string) admin.State {
	t.Helper()
	resp, err := http.Get("http://" + addr + admin.PathState)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode %s: %v", admin.PathState, err)
	}
	return st
}

func startAdmin(t *testing.T, cfg admin.Config, opts ...admin.Option) *admin.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Profiling.Disabled, cfg.MemoryLimit.Disabled = true, true
	srv, err := admin.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return srv
}

// A Consul agent that stops: the API shows the discovery entry stale, and
// the instances kept.
func TestAPIDiscoveryStale(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	conf := api.DefaultConfig()
	conf.Address = agent.Addr
	cc, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	registrar, err := consul.NewRegistrar(cc, consul.RegistrarConfig{})
	if err != nil {
		t.Fatal(err)
	}
	down := startDownstream(t)
	h, err := registrar.Register(ctx, discovery.Registration{Instance: discovery.Instance{
		ID: "inventory-1", Service: "inventory", Address: "127.0.0.1", Port: down.addr.Port}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Deregister(ctx)
	watcher, err := consul.NewWatcher(cc, consul.WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	mon := client.NewMonitor()
	conn, err := client.NewGRPC(ctx, "inventory", client.Config{}, client.WithWatcher(watcher), client.WithMonitor(mon), client.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv := startAdmin(t, admin.Config{}, admin.WithClients(mon))

	entry := func() client.ServiceState {
		for _, s := range getState(t, srv.Addr()).Services {
			if s.Service == "inventory" {
				return s
			}
		}
		return client.ServiceState{}
	}
	eventually(t, 20*time.Second, "the API lists inventory-1, fresh", func() bool {
		e := entry()
		return e.Discovery.Seen && !e.Discovery.Stale && len(e.Instances) == 1 && e.Instances[0].ID == "inventory-1"
	})
	agent.Stop()
	const bound = 15 * time.Second // the watcher notices a dead agent at its next read
	eventually(t, bound, "the API shows inventory stale", func() bool { return entry().Discovery.Stale })
	e := entry()
	if len(e.Instances) != 1 || e.Discovery.Err == "" || e.Discovery.LastConfirmed.IsZero() {
		t.Errorf("stale entry %+v: want the last instance kept, the error and the last confirmation", e)
	}
}

// A bad configuration value is rejected: the API lists the rejection with
// its key and reason, the last good value stays, and /metrics carries the
// breaker, balancer, consumer and config metrics.
func TestAPIConfigRejectionAndMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metrics, err := admin.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics.Reader()))
	defer mp.Shutdown(context.Background())

	file := filepath.Join(t.TempDir(), "app.yaml")
	good := "resilience:\n  default:\n    circuit_breaker:\n      failure_rate: 0.5\n      min_requests: 4\n      window_size: 8\n      open_for: 1h\ndb:\n  password: hunter2\n"
	if err := os.WriteFile(file, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(ctx, config.Layers{File: file}, config.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	policies, err := resilience.NewRegistry(resilience.Config{}, resilience.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "resilience", policies.Update); err != nil {
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() { watched <- cfg.Watch(ctx) }()
	defer func() { cancel(); <-watched }()

	// A failing downstream: the breaker opens, the instance is ejected.
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	down := startDownstream(t)
	down.fail.Store(true)
	down.register(t, reg, "payments", "pay-1")
	mon := client.NewMonitor()
	conn, err := client.NewGRPC(ctx, "payments", client.Config{Balancing: client.Balancing{
		Outlier: client.Outlier{Consecutive: 2, BaseEjection: time.Hour, MaxEjection: time.Hour}}},
		client.WithWatcher(reg), client.WithPolicies(policies), client.WithMonitor(mon),
		client.WithMeterProvider(mp), client.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A consumer that processes one message.
	nats := vitamintest.StartNATS(t)
	js, err := jetstream.New(nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{Name: "orders", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	release := make(chan struct{}) // a message to orders.slow waits for it
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	consumer, err := messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{Stream: "orders", Durable: "billing"},
		func(_ context.Context, m *messaging.Message) error {
			if m.Subject == "orders.slow" {
				<-release
				return nil
			}
			handled <- struct{}{}
			return nil
		},
		messaging.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	consumed := make(chan error, 1)
	go func() { consumed <- consumer.Run(ctx) }()
	defer func() { _ = consumer.Stop(context.Background()); <-consumed }()
	pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(context.Background())
	if _, err := pub.Publish(ctx, "orders.placed", map[string]string{"id": "o-1"}); err != nil {
		t.Fatal(err)
	}
	<-handled

	srv := startAdmin(t, admin.Config{}, admin.WithConfig(cfg), admin.WithPolicies(policies),
		admin.WithClients(mon), admin.WithMetrics(metrics))

	stop := load(conn)
	eventually(t, 20*time.Second, "the breaker opens and the instance is ejected", func() bool {
		st := getState(t, srv.Addr())
		return len(st.Breakers) == 1 && st.Breakers[0].State == "open" &&
			len(st.Services) == 1 && st.Services[0].Ejected == 1
	})
	stop()

	// The bad value.
	// Written aside and renamed over, so that the watch never reads half a file.
	bad := strings.Replace(good, "failure_rate: 0.5", "failure_rate: 7", 1)
	if err := os.WriteFile(file+".new", []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil {
		t.Fatal(err)
	}
	var st admin.State
	eventually(t, 10*time.Second, "the API lists the rejection", func() bool {
		st = getState(t, srv.Addr())
		return st.Config != nil && len(st.Config.Rejections) == 1
	})
	r := st.Config.Rejections[0]
	if !strings.HasPrefix(r.Key, "resilience") || !strings.Contains(r.Reason, "failure_rate") {
		t.Errorf("rejection %+v: want the key under resilience and a reason naming failure_rate", r)
	}
	if cb := policies.Config().Default.CircuitBreaker; cb == nil || cb.FailureRate != 0.5 {
		t.Errorf("breaker in effect %+v, want the last good one (failure rate 0.5)", cb)
	}
	if v := st.Config.Values["db.password"]; v != "[redacted]" {
		t.Errorf("db.password shown as %v, want it redacted", v)
	}
	if i := slices.IndexFunc(st.Consumers, func(c admin.ConsumerState) bool { return c.Stream == "orders" && c.Durable == "billing" }); i < 0 || st.Consumers[i].Processed != 1 {
		t.Errorf("consumers %+v: want orders/billing with 1 processed", st.Consumers)
	}
	// A message whose handler runs is in flight.
	if _, err := pub.Publish(ctx, "orders.slow", map[string]string{"id": "o-2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the consumer shows one message in flight", func() bool {
		st := getState(t, srv.Addr())
		i := slices.IndexFunc(st.Consumers, func(c admin.ConsumerState) bool { return c.Durable == "billing" })
		return i >= 0 && st.Consumers[i].InFlight == 1
	})
	close(release)

	// /metrics, through the Prometheus text parser.
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{
		"vitamin_resilience_circuit_transitions_total", // breaker
		"vitamin_resilience_calls_total",
		"vitamin_client_ejections_total",    // balancer
		"vitamin_messaging_processed_total", // consumer
		"vitamin_config_rejections_total",   // config
		"vitamin_config_updates_total",
		"go_goroutines",
	} {
		if _, ok := families[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
