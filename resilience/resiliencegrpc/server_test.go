package resiliencegrpc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/resilience/resiliencegrpc"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// work is a real gRPC service beside the standard health server: a unary
// Do and a server-streaming Stream, each of which blocks until released
// when asked to ("block"), and fails when asked to ("fail").
type work struct {
	entered chan struct{} // receives once per blocking call that got in
	release chan struct{} // closed to let blocking calls finish
}

func newWork() *work { return &work{entered: make(chan struct{}, 16), release: make(chan struct{})} }

func (w *work) do(ctx context.Context, in string) error {
	switch in {
	case "block":
		w.entered <- struct{}{}
		select {
		case <-w.release:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	case "fail":
		return status.Error(codes.Internal, "broken")
	}
	return nil
}

var workDesc = grpc.ServiceDesc{
	ServiceName: "vitamin.test.Work",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Do",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return in, srv.(*work).do(ctx, req.(*wrapperspb.StringValue).GetValue())
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/vitamin.test.Work/Do"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			if err := srv.(*work).do(ss.Context(), in.GetValue()); err != nil {
				return err
			}
			return ss.SendMsg(in)
		},
	}},
}

// limitedServer is a real gRPC server on loopback with the standard health
// service (serving) and the work service, behind the server interceptors.
type limitedServer struct {
	work   *work
	health *health.Server
	cc     *grpc.ClientConn
	addr   string
	checks atomic.Int32 // Health/Check calls received
}

func startLimited(t *testing.T, e *resilience.Executor, callers *resilience.CallerLimiter) *limitedServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &limitedServer{work: newWork(), health: health.NewServer(), addr: lis.Addr().String()}
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == healthpb.Health_Check_FullMethodName {
			s.checks.Add(1)
		}
		return h(ctx, req)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(count, resiliencegrpc.UnaryServerInterceptor(e, callers)),
		grpc.StreamInterceptor(resiliencegrpc.StreamServerInterceptor(e, callers)))
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, s.health)
	srv.RegisterService(&workDesc, s.work)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	s.cc, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.unblock()
		_ = s.cc.Close()
		srv.Stop()
		<-done
	})
	return s
}

func (s *limitedServer) unblock() {
	select {
	case <-s.work.release:
	default:
		close(s.work.release)
	}
}

// do calls Work/Do and returns its code and pushback trailer.
func (s *limitedServer) do(ctx context.Context, in string) (codes.Code, metadata.MD) {
	var trailer metadata.MD
	err := s.cc.Invoke(ctx, "/vitamin.test.Work/Do", wrapperspb.String(in), new(wrapperspb.StringValue), grpc.Trailer(&trailer))
	return status.Code(err), trailer
}

// stream opens Work/Stream and returns its final code and trailer.
func (s *limitedServer) stream(ctx context.Context, in string) (codes.Code, metadata.MD) {
	cs, err := s.cc.NewStream(ctx, &workDesc.Streams[0], "/vitamin.test.Work/Stream")
	if err != nil {
		return status.Code(err), nil
	}
	if err := cs.SendMsg(wrapperspb.String(in)); err != nil {
		return status.Code(err), nil
	}
	_ = cs.CloseSend()
	for {
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			if errors.Is(err, io.EOF) {
				return codes.OK, cs.Trailer()
			}
			return status.Code(err), cs.Trailer()
		}
	}
}

// block starts n blocking Work/Do calls and waits until all are in their
// handler, so the limits they hold are really taken.
func (s *limitedServer) block(t *testing.T, n int) <-chan codes.Code {
	t.Helper()
	done := make(chan codes.Code, n)
	for range n {
		go func() {
			code, _ := s.do(context.Background(), "block")
			done <- code
		}()
	}
	for range n {
		select {
		case <-s.work.entered:
		case code := <-done:
			t.Fatalf("a blocking call ended with %v before it reached the handler", code)
		case <-time.After(30 * time.Second):
			t.Fatal("blocking calls did not reach the handler")
		}
	}
	return done
}

// healthy asserts that the standard health client sees SERVING through
// Check, List and Watch.
func (s *limitedServer) healthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := healthpb.NewHealthClient(s.cc)
	for range 5 {
		resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Health/Check = %v, %v; want SERVING", resp.GetStatus(), err)
		}
	}
	list, err := c.List(ctx, &healthpb.HealthListRequest{})
	if err != nil || list.GetStatuses()[""].GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health/List = %v, %v; want SERVING", list, err)
	}
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Health/Watch: %v", err)
	}
	resp, err := w.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health/Watch = %v, %v; want SERVING", resp.GetStatus(), err)
	}
}

// pushback returns the trailer's pushback in milliseconds, failing the test
// if there is none (or more than one, which gRPC clients read as "do not
// retry").
func pushback(t *testing.T, what string, trailer metadata.MD) int {
	t.Helper()
	v := trailer.Get(resiliencegrpc.PushbackTrailer)
	if len(v) != 1 {
		t.Fatalf("%s: pushback trailer %q, want one value", what, v)
	}
	ms, err := strconv.Atoi(v[0])
	if err != nil || ms <= 0 {
		t.Fatalf("%s: pushback %q, want a positive number of milliseconds", what, v[0])
	}
	return ms
}

func serverExecutor(t *testing.T, p resilience.Policy) *resilience.Executor {
	t.Helper()
	e, err := resilience.NewExecutor("server", p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func serverCallers(t *testing.T, l resilience.CallerLimits) *resilience.CallerLimiter {
	t.Helper()
	c, err := resilience.NewCallerLimiter(l)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// With each kind of server-side limit full, health checks still answer
// SERVING, and every call the limit refuses (unary and stream) carries a
// pushback trailer.
func TestServerHealthChecksPassFullLimits(t *testing.T) {
	rateLimit := &resilience.RateLimit{Rate: 0.001} // one permit, the next in 1000 s
	for _, tc := range []struct {
		name     string
		policy   resilience.Policy
		callers  *resilience.CallerLimits
		blocking int // calls that block in the handler to fill the limit
		spend    int // calls that finish, spending the rate limit
		want     codes.Code
		pushback int // the pushback in ms; 0: any positive value
	}{
		{name: "bulkhead", policy: resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 2}}, blocking: 2,
			want: codes.Unavailable, pushback: int(resilience.BusyRetryAfter / time.Millisecond)},
		{name: "bulkhead with wait", policy: resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1, MaxWait: time.Millisecond}}, blocking: 1,
			want: codes.Unavailable, pushback: int(resilience.BusyRetryAfter / time.Millisecond)},
		{name: "rate limit", policy: resilience.Policy{RateLimit: rateLimit}, spend: 1,
			want: codes.ResourceExhausted, pushback: 1000 * 1000},
		{name: "caller concurrency", callers: &resilience.CallerLimits{MaxConcurrent: 1}, blocking: 1,
			want: codes.ResourceExhausted, pushback: int(resilience.BusyRetryAfter / time.Millisecond)},
		{name: "caller rate", callers: &resilience.CallerLimits{Rate: 0.001}, spend: 1,
			want: codes.ResourceExhausted, pushback: 1000 * 1000},
		{name: "circuit open", policy: resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 1, FailureRate: 1, OpenFor: time.Hour}}, spend: 1,
			want: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *resilience.Executor
			if tc.policy != (resilience.Policy{}) {
				e = serverExecutor(t, tc.policy)
			}
			var callers *resilience.CallerLimiter
			if tc.callers != nil {
				callers = serverCallers(t, *tc.callers)
			}
			s := startLimited(t, e, callers)
			ctx := context.Background()

			// Health checks before the limit is full take nothing from it.
			s.healthy(t)
			in := ""
			if tc.name == "circuit open" {
				in = "fail"
			}
			for range tc.spend {
				if code, _ := s.do(ctx, in); code != codes.OK && code != codes.Internal {
					t.Fatalf("a call that should get in: %v", code)
				}
			}
			blocked := s.block(t, tc.blocking)

			for _, call := range []struct {
				what string
				fn   func(context.Context, string) (codes.Code, metadata.MD)
			}{{"unary", s.do}, {"stream", s.stream}} {
				code, trailer := call.fn(ctx, "")
				if code != tc.want {
					t.Fatalf("%s call with the limit full: %v, want %v", call.what, code, tc.want)
				}
				ms := pushback(t, call.what, trailer)
				if tc.pushback != 0 && ms != tc.pushback {
					t.Fatalf("%s: pushback %d ms, want %d", call.what, ms, tc.pushback)
				}
			}
			s.healthy(t)
			if e != nil {
				if got := e.Snapshot().Rejected; got != 2 {
					t.Fatalf("executor counted %d rejections, want 2 (health checks are not counted)", got)
				}
			}
			if callers != nil && callers.Rejected() != 2 {
				t.Fatalf("caller limiter counted %d rejections, want 2", callers.Rejected())
			}
			s.unblock()
			for range tc.blocking {
				if code := <-blocked; code != codes.OK {
					t.Fatalf("a blocked call ended with %v", code)
				}
			}
		})
	}
}

// An open Health/Watch stream holds no bulkhead slot: with MaxConcurrent 1
// and watches open, ordinary calls still get through one at a time, and the
// watches keep reporting status changes.
func TestServerWatchHoldsNoSlot(t *testing.T) {
	e := serverExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1}})
	s := startLimited(t, e, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := healthpb.NewHealthClient(s.cc)
	var watches []healthpb.Health_WatchClient
	for range 3 {
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Watch = %v, %v; want SERVING", resp.GetStatus(), err)
		}
		watches = append(watches, w)
	}
	for range 5 {
		if code, _ := s.do(ctx, ""); code != codes.OK {
			t.Fatalf("call with watches open: %v, want OK (a watch must not hold the only slot)", code)
		}
		if code, _ := s.stream(ctx, ""); code != codes.OK {
			t.Fatalf("stream with watches open: %v, want OK", code)
		}
	}
	// The single slot is really there and really the limit.
	blocked := s.block(t, 1)
	if code, trailer := s.do(ctx, ""); code != codes.Unavailable {
		t.Fatalf("second call: %v, want UNAVAILABLE from the full bulkhead", code)
	} else {
		pushback(t, "bulkhead", trailer)
	}
	// The watches are alive and see a change while the bulkhead is full.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, w := range watches {
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
		}
	}
	s.unblock()
	if code := <-blocked; code != codes.OK {
		t.Fatalf("blocked call: %v", code)
	}
	cancel()
	for _, w := range watches {
		if _, err := w.Recv(); status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch after cancel: %v", err)
		}
	}
}

// Per-caller limits keep one noisy caller from starving the others, and
// each refusal carries pushback.
func TestServerPerCallerLimit(t *testing.T) {
	s := startLimited(t, nil, serverCallers(t, resilience.CallerLimits{Rate: 0.01, Burst: 2}))
	call := func(caller string) (codes.Code, metadata.MD) {
		return s.do(metadata.AppendToOutgoingContext(context.Background(), resilience.CallerMetadataKey, caller), "")
	}
	rejected := 0
	for range 10 {
		code, trailer := call("noisy")
		if code == codes.ResourceExhausted {
			rejected++
			pushback(t, "caller limit", trailer)
		}
	}
	if rejected != 8 {
		t.Fatalf("noisy caller: %d of 10 rejected, want 8 (burst 2)", rejected)
	}
	for range 2 {
		if code, _ := call("quiet"); code != codes.OK {
			t.Fatalf("quiet caller got %v while the noisy one was limited", code)
		}
	}
}

// The cascade of issue 13: a real Consul agent checks the server with its
// gRPC health check while the bulkhead is full. The check keeps passing,
// so the busy instance stays registered.
func TestServerConsulGRPCCheckPassesFullBulkhead(t *testing.T) {
	consul := vitamintest.StartConsul(t)
	s := startLimited(t, serverExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1}}), nil)
	host, port, _ := net.SplitHostPort(s.addr)
	p, _ := strconv.Atoi(port)
	err := consul.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "orders-1", Name: "orders", Address: host, Port: p,
		Check: &api.AgentServiceCheck{CheckID: "orders-1-grpc", GRPC: s.addr, Interval: "1s", Timeout: "5s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	status := func() (string, error) {
		checks, err := consul.Client.Agent().Checks()
		if err != nil {
			return "", err
		}
		c, ok := checks["orders-1-grpc"]
		if !ok {
			return "", errors.New("check not registered")
		}
		return c.Status + " (" + c.Output + ")", nil
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if st, err := status(); err != nil || !strings.HasPrefix(st, api.HealthPassing) {
			return fmt.Errorf("check %q, %v; want passing", st, err)
		}
		return nil
	})

	blocked := s.block(t, 1)
	if code, _ := s.do(context.Background(), ""); code != codes.Unavailable {
		t.Fatalf("call with the bulkhead full: %v, want UNAVAILABLE", code)
	}
	// Three more probes while the bulkhead is full; after each, Consul
	// still says passing.
	from := s.checks.Load()
	var notPassing []string
	vitamintest.Eventually(t, 30*time.Second, func() error {
		st, err := status()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(st, api.HealthPassing) && len(notPassing) < 3 {
			notPassing = append(notPassing, st)
		}
		if n := s.checks.Load() - from; n < 3 {
			return fmt.Errorf("%d probes since the bulkhead filled, want 3", n)
		}
		return nil
	})
	if len(notPassing) > 0 {
		t.Fatalf("the Consul check left passing while the bulkhead was full: %q", notPassing)
	}
	if st, _ := status(); !strings.HasPrefix(st, api.HealthPassing) {
		t.Fatalf("check %q with the bulkhead full, want passing", st)
	}
	s.unblock()
	if code := <-blocked; code != codes.OK {
		t.Fatalf("blocked call: %v", code)
	}
}
