package admin_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// pollInterval is how often the benchmarks' poller reads the page and the
// API: ten times the page's default refresh.
const pollInterval = 200 * time.Millisecond

// withAdmin starts an admin server for policies and mon, and a poller
// that loads the page's refresh fragment, the JSON API and /metrics every
// pollInterval while on is set, as an open page, a cluster view and a
// Prometheus scraper would. stop ends both.
func withAdmin(b *testing.B, metrics *admin.Metrics, policies *resilience.Registry, mon *client.Monitor, on *atomic.Bool) (stop func()) {
	b.Helper()
	opts := []admin.Option{admin.WithPolicies(policies), admin.WithMetrics(metrics)}
	if mon != nil {
		opts = append(opts, admin.WithClients(mon))
	}
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Profiling: admin.Profiling{Disabled: true}, MemoryLimit: admin.MemoryLimit{Disabled: true}}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{}}
	wg.Go(func() {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			for _, p := range []string{"/?fragment=1", admin.PathState, "/metrics"} {
				if !on.Load() {
					break
				}
				if resp, err := hc.Get("http://" + srv.Addr() + p); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		hc.CloseIdleConnections()
		_ = srv.Close(context.Background())
	}
}

var benchPolicy = resilience.Policy{
	Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: 10 * time.Millisecond, Jitter: 0.2},
	Budget:         &resilience.Budget{Ratio: 0.2, MinConcurrency: 3},
	CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 100, FailureRate: 0.5, MinRequests: 20, OpenFor: 5 * time.Second},
}

// setup is one variant of a benchmark: the policies and the client (if
// any) with the meter provider mp, monitored by mon.
type setup func(b *testing.B, mp *sdkmetric.MeterProvider, mon *client.Monitor) (call func(), policies *resilience.Registry, done func())

// benchAdmin runs call in three variants: "metrics-off" (no meter
// provider: what the package benchmarks measure), "metrics-on" (an SDK
// meter provider with a manual reader, as a service that exports metrics
// has) and "admin-polled" (the admin's Prometheus reader instead, the
// client monitored, the admin listener started and polled). Then "ratio"
// runs admin-polled in alternating chunks with the poller on and off and
// reports their ratio, which the machine's drift does not skew: the
// budget is ≤ 1.02.
func benchAdmin(b *testing.B, chunk int, build setup) {
	for _, v := range []string{"metrics-off", "metrics-on", "admin-polled", "ratio"} {
		var mp *sdkmetric.MeterProvider
		var metrics *admin.Metrics
		var mon *client.Monitor
		switch v {
		case "metrics-on":
			mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		case "admin-polled", "ratio":
			var err error
			if metrics, err = admin.NewMetrics(); err != nil {
				b.Fatal(err)
			}
			mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics.Reader()))
			mon = client.NewMonitor()
		}
		call, policies, done := build(b, mp, mon)
		call()
		b.Run(v, func(b *testing.B) {
			var on atomic.Bool
			on.Store(true)
			if metrics != nil {
				defer withAdmin(b, metrics, policies, mon, &on)()
			}
			b.ReportAllocs()
			if v != "ratio" {
				for b.Loop() {
					call()
				}
				return
			}
			var t [2]time.Duration // off, on
			n := 0
			for b.Loop() {
				if n%chunk == 0 {
					on.Store(!on.Load())
				}
				side := 0
				if on.Load() {
					side = 1
				}
				s := time.Now()
				call()
				t[side] += time.Since(s)
				n++
			}
			if t[0] > 0 {
				b.ReportMetric(float64(t[1])/float64(t[0]), "polled/off")
			}
		})
		done()
		if mp != nil {
			_ = mp.Shutdown(context.Background())
		}
	}
}

// BenchmarkUnaryAdmin is client.BenchmarkUnary's retry+breaker call (one
// unary gRPC call through the whole client stack, tracing off) with and
// without the admin surface; see benchAdmin.
func BenchmarkUnaryAdmin(b *testing.B) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	dialer := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
		ID: "inventory-1", Service: "inventory", Address: "127.0.0.1", Port: 1}}); err != nil {
		b.Fatal(err)
	}
	req := &healthpb.HealthCheckRequest{}
	benchAdmin(b, 100, func(b *testing.B, mp *sdkmetric.MeterProvider, mon *client.Monitor) (func(), *resilience.Registry, func()) {
		var ropts []resilience.Option
		copts := []client.GRPCOption{client.WithWatcher(reg), client.WithCaller("bench"), client.WithoutTracing(), client.WithDialOptions(dialer)}
		if mp != nil {
			ropts = append(ropts, resilience.WithMeterProvider(mp))
			copts = append(copts, client.WithMeterProvider(mp))
		}
		if mon != nil {
			copts = append(copts, client.WithMonitor(mon))
		}
		policies, err := resilience.NewRegistry(resilience.Config{Default: benchPolicy}, ropts...)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := client.NewGRPC(context.Background(), "inventory", client.Config{}, append(copts, client.WithPolicies(policies))...)
		if err != nil {
			b.Fatal(err)
		}
		return func() {
			var resp healthpb.HealthCheckResponse
			if err := conn.Invoke(context.Background(), "/grpc.health.v1.Health/Check", req, &resp); err != nil {
				b.Fatal(err)
			}
		}, policies, func() { conn.Close() }
	})
}

// BenchmarkPolicyAdmin is resilience.BenchmarkRetryBreakerBudget's
// success path (retry, breaker and budget) with and without the admin
// surface; see benchAdmin.
func BenchmarkPolicyAdmin(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	benchAdmin(b, 10000, func(b *testing.B, mp *sdkmetric.MeterProvider, _ *client.Monitor) (func(), *resilience.Registry, func()) {
		var ropts []resilience.Option
		if mp != nil {
			ropts = append(ropts, resilience.WithMeterProvider(mp))
		}
		policies, err := resilience.NewRegistry(resilience.Config{Default: benchPolicy}, ropts...)
		if err != nil {
			b.Fatal(err)
		}
		e := policies.For("inventory", "")
		return func() {
			if err := e.Run(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}, policies, func() {}
	})
}

// BenchmarkPoll is the cost of one poll of benchAdmin's poller (the page's
// refresh fragment, the JSON API and /metrics) for a service with one
// monitored client and one policy: the time the admin surface takes from
// the service per look.
func BenchmarkPoll(b *testing.B) {
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
		ID: "inventory-1", Service: "inventory", Address: "127.0.0.1", Port: 1}}); err != nil {
		b.Fatal(err)
	}
	metrics, err := admin.NewMetrics()
	if err != nil {
		b.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics.Reader()))
	defer mp.Shutdown(context.Background())
	policies, err := resilience.NewRegistry(resilience.Config{Default: benchPolicy}, resilience.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	_ = policies.For("inventory", "").Run(context.Background(), func(context.Context) error { return nil })
	mon := client.NewMonitor()
	hc, err := client.NewHTTP("inventory", client.Config{}, client.WithWatcher(reg), client.WithMonitor(mon), client.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	defer client.CloseHTTP(hc)
	srv, err := admin.New(admin.Config{Profiling: admin.Profiling{Disabled: true}}, admin.WithPolicies(policies), admin.WithClients(mon), admin.WithMetrics(metrics))
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range []string{"/?fragment=1", admin.PathState, "/metrics"} {
			h.ServeHTTP(discard{}, httptestRequest(p))
		}
	}
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

func httptestRequest(path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://admin"+path, nil)
	return r
}
