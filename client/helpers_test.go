package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/resilience/resiliencegrpc"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(serveChild(kind)) // a backend process of procBackend
	}
	goleak.VerifyTestMain(m)
}

// backend is a real server on 127.0.0.1 that counts the calls it serves
// and can be slowed down or made to fail.
type backend struct {
	id      string
	port    int
	calls   atomic.Int64
	delay   atomic.Int64 // nanoseconds
	fail    atomic.Bool
	mu      sync.Mutex
	callers map[string]int

	traceparent atomic.Value

	grpc *grpc.Server
	http *httptest.Server
	stop sync.Once
}

func (b *backend) serve(ctx context.Context) error {
	b.calls.Add(1)
	if d := time.Duration(b.delay.Load()); d > 0 {
		t := time.NewTimer(d) // simulated service time
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if b.fail.Load() {
		return errors.New("failing on purpose")
	}
	return nil
}

func (b *backend) sawCaller(name string) {
	b.mu.Lock()
	if b.callers == nil {
		b.callers = map[string]int{}
	}
	b.callers[name]++
	b.mu.Unlock()
}

func (b *backend) callerCount(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.callers[name]
}

// startGRPC starts a gRPC server with the standard health service, whose
// Check calls are the test traffic.
func startGRPC(t testing.TB, id string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{id: id, port: lis.Addr().(*net.TCPAddr).Port}
	b.grpc = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if v := metadata.ValueFromIncomingContext(ctx, "traceparent"); len(v) > 0 {
			b.traceparent.Store(v[0])
		}
		if c := resiliencegrpc.Caller(ctx); c != "" {
			b.sawCaller(c)
		}
		if err := b.serve(ctx); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(b.grpc, hs)
	echo := healthpb.Health_ServiceDesc
	echo.ServiceName = "vitamin.test.Echo" // a traced service (health checks are not)
	b.grpc.RegisterService(&echo, hs)
	go func() { _ = b.grpc.Serve(lis) }()
	t.Cleanup(b.Stop)
	return b
}

// startHTTP starts an HTTP server that answers 200 with its ID, or 503
// when failing.
func startHTTP(t testing.TB, id string) *backend {
	t.Helper()
	b := &backend{id: id}
	b.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Get(resilience.CallerHeader); c != "" {
			b.sawCaller(c)
		}
		if err := b.serve(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, id)
	}))
	b.port = b.http.Listener.Addr().(*net.TCPAddr).Port
	t.Cleanup(b.Stop)
	return b
}

// Stop kills the server: listeners and connections are closed at once.
func (b *backend) Stop() {
	b.stop.Do(func() {
		if b.grpc != nil {
			b.grpc.Stop()
		}
		if b.http != nil {
			b.http.CloseClientConnections()
			b.http.Close()
		}
	})
}

func (b *backend) instance(service string, meta map[string]string) discovery.Instance {
	return discovery.Instance{ID: b.id, Service: service, Address: "127.0.0.1", Port: b.port, Meta: meta}
}

func newRegistry(t testing.TB) *vitamintest.Registry {
	t.Helper()
	r, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{SelfPreservation: discovery.SelfPreservation{ConfirmAfter: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func register(t testing.TB, r discovery.Registrar, inst discovery.Instance) discovery.Registered {
	t.Helper()
	reg, err := r.Register(context.Background(), discovery.Registration{Instance: inst})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = reg.Deregister(ctx)
	})
	return reg
}

func policies(t testing.TB, p resilience.Policy) *resilience.Registry {
	t.Helper()
	r, err := resilience.NewRegistry(resilience.Config{Default: p})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func check(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// echo calls the traced copy of the health service.
func echo(ctx context.Context, conn *grpc.ClientConn) error {
	return conn.Invoke(ctx, "/vitamin.test.Echo/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
}

func counts(bs ...*backend) map[string]int64 {
	m := map[string]int64{}
	for _, b := range bs {
		m[b.id] = b.calls.Load()
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }

// startFleet starts a backend per id with start (startGRPC or startHTTP),
// each answering after delay, and registers them in reg.
func startFleet(t testing.TB, reg discovery.Registrar, start func(testing.TB, string) *backend, delay time.Duration, ids ...string) []*backend {
	t.Helper()
	bs := make([]*backend, len(ids))
	for i, id := range ids {
		bs[i] = start(t, id)
		bs[i].delay.Store(int64(delay))
		register(t, reg, bs[i].instance(svc, nil))
	}
	return bs
}

// emptySetPolicy retries and has a breaker that would open after five
// failures and stay open for an hour.
var emptySetPolicy = resilience.Policy{
	Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: 10 * time.Millisecond},
	CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, MinRequests: 5, OpenFor: time.Hour},
}

func checkEmptySetSnapshot(t *testing.T, s resilience.Snapshot) {
	t.Helper()
	if s.Calls != 20 || s.Retries != 0 || s.Circuit != "closed" {
		t.Fatalf("after 20 calls without instances: %d calls, %d retries, circuit %q; want 20, 0, closed", s.Calls, s.Retries, s.Circuit)
	}
}

// runLoad runs call from workers goroutines until it was made n times,
// calling during (if not nil) with each call's number first, and returns
// how many calls failed, with the first error.
func runLoad(workers, n int, during func(i int64), call func() error) (int64, error) {
	var next, failed atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if during != nil {
					during(i)
				}
				if err := call(); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return failed.Load(), *p
	}
	return 0, nil
}
