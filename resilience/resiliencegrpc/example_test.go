package resiliencegrpc_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/resilience/resiliencegrpc"
)

type flaky struct {
	healthpb.UnimplementedHealthServer
	calls atomic.Int32
}

func (f *flaky) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if f.calls.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// The client interceptors retry an UNAVAILABLE answer, bound each attempt
// with a deadline the server sees, and fail fast with UNAVAILABLE (matching
// resilience.ErrCircuitOpen) while the circuit is open.
func ExampleUnaryClientInterceptor() {
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer()
	svc := &flaky{}
	healthpb.RegisterHealthServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	policies, _ := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		Timeout:        time.Second,
		Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: time.Millisecond, On: []string{"UNAVAILABLE"}},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, MinRequests: 5, OpenFor: 5 * time.Second},
	}})
	pick := resiliencegrpc.ForService(policies, "health")
	cc, _ := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(resiliencegrpc.UnaryClientInterceptor(pick)),
		grpc.WithStreamInterceptor(resiliencegrpc.StreamClientInterceptor(pick)))
	defer cc.Close()

	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err, "after", svc.calls.Load(), "attempts")
	// Output:
	// SERVING <nil> after 2 attempts
}

// Servers shed load before the handler runs, per caller and overall.
func ExampleUnaryServerInterceptor() {
	callers, _ := resilience.NewCallerLimiter(resilience.CallerLimits{Rate: 100, Burst: 20, MaxConcurrent: 10})
	server, _ := resilience.NewExecutor("orders-server", resilience.Policy{
		Timeout:  2 * time.Second,
		Bulkhead: &resilience.Bulkhead{MaxConcurrent: 200},
	})
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(resiliencegrpc.UnaryServerInterceptor(server, callers)),
		grpc.StreamInterceptor(resiliencegrpc.StreamServerInterceptor(server, callers)),
	)
	defer srv.Stop()
	fmt.Println(server.Snapshot().Rejected)
	// Output: 0
}
