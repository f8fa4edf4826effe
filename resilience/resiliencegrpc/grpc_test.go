package resiliencegrpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/resilience/resiliencegrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// healthServer is a real gRPC service whose behaviour each test sets.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	check func(ctx context.Context, n int32) (*healthpb.HealthCheckResponse, error)
	watch func(req *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error
	calls atomic.Int32
}

func (h *healthServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	n := h.calls.Add(1)
	if h.check == nil {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	return h.check(ctx, n)
}

func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	h.calls.Add(1)
	return h.watch(req, s)
}

// serve starts a gRPC server on loopback and returns a client for it.
func serve(t *testing.T, h *healthServer, srvOpts []grpc.ServerOption, dialOpts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(srvOpts...)
	healthpb.RegisterHealthServer(srv, h)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
		<-done
	})
	return healthpb.NewHealthClient(cc)
}

func registry(t *testing.T, p resilience.Policy) *resilience.Registry {
	t.Helper()
	r, err := resilience.NewRegistry(resilience.Config{Default: p})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func clientOpts(r *resilience.Registry) []grpc.DialOption {
	pick := resiliencegrpc.ForService(r, "health")
	return []grpc.DialOption{
		grpc.WithUnaryInterceptor(resiliencegrpc.UnaryClientInterceptor(pick)),
		grpc.WithStreamInterceptor(resiliencegrpc.StreamClientInterceptor(pick)),
	}
}

func TestUnaryClientRetriesAndBreaks(t *testing.T) {
	h := &healthServer{check: func(_ context.Context, n int32) (*healthpb.HealthCheckResponse, error) {
		if n <= 2 {
			return nil, status.Error(codes.Unavailable, "warming up")
		}
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}}
	r := registry(t, resilience.Policy{
		Timeout:        time.Minute,
		Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: time.Millisecond},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 4, FailureRate: 1, MinRequests: 4, OpenFor: time.Hour},
	})
	c := serve(t, h, nil, clientOpts(r)...)
	ctx := context.Background()

	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || h.calls.Load() != 3 {
		t.Fatalf("got %v, %v after %d calls; want SERVING on the third", resp, err, h.calls.Load())
	}

	// Client errors are neither retried nor counted against the breaker.
	h.calls.Store(0)
	h.check = func(context.Context, int32) (*healthpb.HealthCheckResponse, error) {
		return nil, status.Error(codes.NotFound, "no such service")
	}
	for range 5 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.NotFound {
			t.Fatalf("got %v, want NotFound", err)
		}
	}
	if h.calls.Load() != 5 {
		t.Fatalf("%d server calls for 5 NotFound calls, want no retries", h.calls.Load())
	}

	// Server failures open the breaker; the client then fails fast with UNAVAILABLE.
	h.check = func(context.Context, int32) (*healthpb.HealthCheckResponse, error) {
		return nil, status.Error(codes.Internal, "broken")
	}
	for range 4 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Internal {
			t.Fatalf("got %v, want Internal (not retried)", err)
		}
	}
	h.calls.Store(0)
	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable || !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("got %v, want UNAVAILABLE matching ErrCircuitOpen", err)
	}
	if h.calls.Load() != 0 {
		t.Fatal("the server was called while the circuit was open")
	}
	if s := r.For("health", "grpc.health.v1.Health/Check").Snapshot(); s.Circuit != "open" || s.Policy != "health" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestUnaryClientDeadlineReachesServer(t *testing.T) {
	h := &healthServer{check: func(ctx context.Context, _ int32) (*healthpb.HealthCheckResponse, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, status.Error(codes.FailedPrecondition, "no deadline")
		}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}}
	// 200ms per attempt: long enough for the second attempt to reach the
	// server on a loaded machine, so that the server sees both.
	r := registry(t, resilience.Policy{Timeout: 200 * time.Millisecond, Retry: &resilience.Retry{MaxAttempts: 2}})
	c := serve(t, h, nil, clientOpts(r)...)
	_, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, resilience.ErrTimeout) {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED matching ErrTimeout", err)
	}
	if h.calls.Load() != 2 {
		t.Fatalf("%d attempts, want 2 (the timed-out attempt is retried)", h.calls.Load())
	}
}

func TestUnaryClientHedges(t *testing.T) {
	h := &healthServer{check: func(ctx context.Context, n int32) (*healthpb.HealthCheckResponse, error) {
		if n == 1 {
			<-ctx.Done() // the first attempt hangs until the hedge wins
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}}
	r := registry(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: 5 * time.Millisecond}, Budget: &resilience.Budget{Ratio: 1, MinConcurrency: 1, MaxBalance: 1}})
	c := serve(t, h, nil, clientOpts(r)...)
	// A new budget is advanced one retry or hedge, so the first call can hedge.
	resp, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("got %v, %v; want the hedge's answer", resp, err)
	}
	if s := r.Snapshot()[0]; s.Hedges != 1 {
		t.Fatalf("snapshot %+v, want one hedge", s)
	}
}

func TestServerStreamingThroughInterceptors(t *testing.T) {
	h := &healthServer{watch: func(req *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
		if req.GetService() == "broken" {
			return status.Error(codes.Unavailable, "broken")
		}
		for range 3 {
			if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
				return err
			}
		}
		return nil
	}}
	r := registry(t, resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: time.Hour},
	})
	server, err := resilience.NewExecutor("server", resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 10}})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, h, []grpc.ServerOption{grpc.StreamInterceptor(resiliencegrpc.StreamServerInterceptor(server, nil))}, clientOpts(r)...)
	ctx := context.Background()

	watch := func(service string) (int, error) {
		st, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return 0, err
		}
		n := 0
		for {
			_, err := st.Recv()
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
			n++
		}
	}
	if n, err := watch(""); err != nil || n != 3 {
		t.Fatalf("received %d messages, %v; want 3", n, err)
	}
	for range 2 {
		if _, err := watch("broken"); status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	}
	// Two failed streams opened the breaker: the next stream is refused before it starts.
	calls := h.calls.Load()
	_, err = watch("")
	if !errors.Is(err, resilience.ErrCircuitOpen) || status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want ErrCircuitOpen", err)
	}
	if h.calls.Load() != calls {
		t.Fatal("a stream reached the server while the circuit was open")
	}
	if s := server.Snapshot(); s.Rejected != 0 {
		t.Fatalf("server snapshot %+v", s)
	}
}

func TestServerCaller(t *testing.T) {
	var seen atomic.Value
	remember := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen.Store(resiliencegrpc.Caller(ctx))
		return h(ctx, req)
	})
	for _, tc := range []struct {
		name      string
		userAgent string
		md        string
		want      string
	}{
		{"user agent", resilience.CallerUserAgent("orders"), "", "orders"},
		{"metadata wins", resilience.CallerUserAgent("orders"), "gateway", "gateway"},
		{"metadata only", "", "gateway", "gateway"},
		{"neither", "", "", ""},
		{"other user agent", "curl/8.0", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dial []grpc.DialOption
			if tc.userAgent != "" {
				dial = append(dial, grpc.WithUserAgent(tc.userAgent))
			}
			c := serve(t, &healthServer{}, []grpc.ServerOption{remember}, dial...)
			ctx := context.Background()
			if tc.md != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, resilience.CallerMetadataKey, tc.md)
			}
			if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			if got := seen.Load(); got != tc.want {
				t.Fatalf("Caller = %q, want %q", got, tc.want)
			}
		})
	}
}
