package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// heldRegistrar registers with an in-memory registry, and holds each
// Deregister until release is closed, so that a test can look at the
// service while it stops.
type heldRegistrar struct {
	*vitamintest.Registry
	release chan struct{}
}

func (r heldRegistrar) Register(ctx context.Context, reg discovery.Registration) (discovery.Registered, error) {
	h, err := r.Registry.Register(ctx, reg)
	if err != nil {
		return nil, err
	}
	return heldRegistration{h, r.release}, nil
}

type heldRegistration struct {
	discovery.Registered
	release chan struct{}
}

func (h heldRegistration) Deregister(ctx context.Context) error {
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return h.Registered.Deregister(ctx)
}

// TestHealthAcrossStartServingStopping follows /livez, /readyz and
// grpc.health.v1 with a real HTTP client and the gRPC health client while
// the service starts (a readiness check fails), serves, loses a dependency
// and stops.
func TestHealthAcrossStartServingStopping(t *testing.T) {
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	release := make(chan struct{})
	var dbUp atomic.Bool
	cfg := quiet("orders")
	started := make(chan struct{})
	svc, err := service.New(cfg,
		service.WithLogger(nil), service.WithSignals(),
		service.WithRegistrar(heldRegistrar{reg, release}),
		service.WithHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })),
		service.WithGRPC(func(*grpc.Server) {}),
		service.WithReadiness("db", func(context.Context) error {
			if !dbUp.Load() {
				return errors.New("db down")
			}
			return nil
		}),
		service.WithStartHook(func(context.Context) error { close(started); return nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()

	var conn *grpc.ClientConn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	get := func(path string) (int, string, error) {
		resp, err := hc.Get("http://" + svc.HTTPAddr() + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), err
	}
	grpcStatus := func(service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		if conn == nil {
			if svc.GRPCAddr() == "" {
				return 0, errors.New("gRPC not listening yet")
			}
			if conn, err = grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
				return 0, err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return resp.GetStatus(), err
	}
	expect := func(stage string, live, ready int, readyBody string, grpcReady healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		vitamintest.Eventually(t, 10*time.Second, func() error {
			if svc.HTTPAddr() == "" {
				return errors.New("not listening yet")
			}
			if code, _, err := get(service.LivezPath); err != nil || code != live {
				return fmt.Errorf("%s: /livez: %d %v, want %d", stage, code, err, live)
			}
			for _, p := range []string{service.ReadyzPath, service.HealthPath} {
				if code, body, err := get(p); err != nil || code != ready || !strings.Contains(body, readyBody) {
					return fmt.Errorf("%s: %s: %d %q %v, want %d %q", stage, p, code, body, err, ready, readyBody)
				}
			}
			for _, name := range []string{"", "orders"} {
				if st, err := grpcStatus(name); err != nil || st != grpcReady {
					return fmt.Errorf("%s: gRPC health %q: %v %v, want %v", stage, name, st, err, grpcReady)
				}
			}
			if st, err := grpcStatus(service.LivenessService); err != nil || st != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("%s: gRPC health %q: %v %v, want SERVING", stage, service.LivenessService, st, err)
			}
			return nil
		})
	}
	const serving, notServing = healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING

	expect("starting", 200, 503, `readiness check "db": db down`, notServing)
	if n := len(reg.Instances("orders")); n != 0 {
		t.Fatalf("%d instances registered before the service is ready, want 0", n)
	}
	dbUp.Store(true)
	<-started
	expect("serving", 200, 200, "ok", serving)
	if n := len(reg.Instances("orders")); n != 2 {
		t.Fatalf("%d instances registered once ready, want 2 (HTTP and gRPC)", n)
	}
	if code, body, err := get("/"); err != nil || code != 200 || body != "hello" {
		t.Fatalf("GET /: %d %q %v, want the handler's answer", code, body, err)
	}

	dbUp.Store(false)
	expect("dependency down", 200, 503, "db down", notServing) // liveness unchanged
	dbUp.Store(true)
	expect("dependency back", 200, 200, "ok", serving)

	cancel()
	expect("stopping", 200, 503, "stopping", notServing)
	if n := len(reg.Instances("orders")); n != 2 {
		t.Fatalf("%d instances registered before the deregistration ended, want 2", n)
	}
	close(release)
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(reg.Instances("orders")); n != 0 {
		t.Fatalf("%d instances registered after the stop, want 0", n)
	}
}

// TestConsulDownNeverFailsHealth stops the Consul agent under a running
// service: liveness and readiness stay 200 (a dependency's trouble must not
// make Kubernetes restart the pod), and once the agent is back the
// instance is registered again.
func TestConsulDownNeverFailsHealth(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cfg := quiet("orders")
	cfg.Consul.Address = agent.Addr
	cfg.Check = service.Check{Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond}
	svc, err := service.New(cfg, service.WithLogger(nil), service.WithSignals(),
		service.WithHTTP(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	passing := func() error {
		entries, _, err := agent.Client.Health().Service("orders", "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 1 {
			return fmt.Errorf("%d passing instances in Consul, want 1", len(entries))
		}
		return nil
	}
	vitamintest.Eventually(t, 10*time.Second, passing)

	agent.Stop()
	for _, p := range []string{service.LivezPath, service.ReadyzPath} {
		resp, err := hc.Get("http://" + svc.HTTPAddr() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with Consul down: %d, want 200", p, resp.StatusCode)
		}
	}
	agent.Restart(t)
	vitamintest.Eventually(t, 20*time.Second, passing)
}
