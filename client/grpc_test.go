package client_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/vitamintest"
)

const svc = "orders"

func dial(t testing.TB, cfg client.Config, opts ...client.GRPCOption) *grpc.ClientConn {
	t.Helper()
	conn, err := client.NewGRPC(context.Background(), svc, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// load runs calls from workers goroutines until n calls were made and
// returns the number that failed, with the first error.
func load(conn *grpc.ClientConn, workers, n int, during func(done int64)) (int64, error) {
	return runLoad(workers, n, during, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return check(ctx, conn)
	})
}

func TestGRPCSpread(t *testing.T) {
	for _, alg := range []client.Algorithm{client.PowerOfTwo, client.RoundRobin} {
		t.Run(string(alg), func(t *testing.T) {
			reg := newRegistry(t)
			bs := startFleet(t, reg, startGRPC, time.Millisecond, "a", "b", "c") // equal service times
			conn := dial(t, client.Config{Balancing: client.Balancing{Algorithm: alg}},
				client.WithWatcher(reg), client.WithoutTracing())
			allReady(t, conn, bs...)
			for _, b := range bs {
				b.calls.Store(0)
			}
			if failed, err := load(conn, 4, 600, nil); failed > 0 {
				t.Fatalf("%d calls failed: %v", failed, err)
			}
			for _, b := range bs {
				if n := b.calls.Load(); n < 60 {
					t.Errorf("instance %s got %d of 600 calls: %v", b.id, n, counts(bs...))
				}
			}
		})
	}
}

func TestGRPCConsulMembership(t *testing.T) {
	c := vitamintest.StartConsul(t)
	w := newConsulWatcher(t, c)
	r := newConsulRegistrar(t, c)
	a, b, n := startGRPC(t, "a"), startGRPC(t, "b"), startGRPC(t, "new")
	register(t, r, a.instance(svc, nil))
	rb := register(t, r, b.instance(svc, nil))
	conn := dial(t, client.Config{}, client.WithWatcher(w), client.WithoutTracing())
	vitamintest.Eventually(t, 10*time.Second, func() error { return check(context.Background(), conn) })

	// A new instance registered in Consul starts receiving calls.
	register(t, r, n.instance(svc, nil))
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if err := check(context.Background(), conn); err != nil {
			return err
		}
		if n.calls.Load() == 0 {
			return errors.New("the new instance got no call yet")
		}
		return nil
	})

	// A deregistered one stops receiving calls.
	if err := rb.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		before := b.calls.Load()
		if failed, err := load(conn, 2, 60, nil); failed > 0 {
			return err
		}
		if after := b.calls.Load(); after != before {
			return fmt.Errorf("deregistered instance still got %d of 60 calls", after-before)
		}
		return nil
	})
	before := b.calls.Load()
	if failed, err := load(conn, 2, 200, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	if after := b.calls.Load(); after != before {
		t.Fatalf("deregistered instance got %d calls after it was gone", after-before)
	}
	if a.calls.Load() == 0 || n.calls.Load() == 0 {
		t.Fatalf("calls did not spread: %v", counts(a, b, n))
	}
}

func TestGRPCKillUnderLoad(t *testing.T) {
	reg := newRegistry(t)
	bs := startFleet(t, reg, startGRPC, time.Millisecond, "a", "b", "victim")
	victim := bs[2]
	vw := &victimWatch{addr: "127.0.0.1:" + itoa(victim.port)}
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing(), client.WithDialOptions(grpc.WithStatsHandler(vw)),
		client.WithPolicies(policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})))
	allReady(t, conn, bs...)

	var atKill int64
	failed, err := load(conn, 6, 1500, func(i int64) {
		if i == 500 {
			victim.Stop() // the process dies: in-flight calls fail, connections drop
			atKill = victim.calls.Load()
		}
	})
	if failed > 0 {
		t.Fatalf("%d calls failed after an instance was killed: %v", failed, err)
	}
	if after := victim.calls.Load(); after != atKill {
		t.Fatalf("killed instance served %d calls after it died", after-atKill)
	}
	if atKill == 0 {
		t.Fatalf("the victim got no calls before it was killed: %v", counts(bs...))
	}
	// No attempt is even sent to the dead instance any more.
	before := vw.attempts.Load()
	if failed, err := load(conn, 4, 300, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	if n := vw.attempts.Load() - before; n > 0 {
		t.Fatalf("%d attempts went to the dead instance", n)
	}
}

// allReady waits until every backend served a call through conn.
func allReady(t *testing.T, conn *grpc.ClientConn, bs ...*backend) {
	t.Helper()
	vitamintest.Eventually(t, 5*time.Second, func() error {
		for range 20 {
			if err := check(context.Background(), conn); err != nil {
				return err
			}
		}
		for _, b := range bs {
			if b.calls.Load() == 0 {
				return fmt.Errorf("%s got no call yet", b.id)
			}
		}
		return nil
	})
}

func TestGRPCEjection(t *testing.T) {
	reg := newRegistry(t)
	bs := []*backend{startGRPC(t, "a"), startGRPC(t, "b"), startGRPC(t, "bad")}
	for _, b := range bs {
		register(t, reg, b.instance(svc, nil))
	}
	bad := bs[2]
	conn := dial(t, client.Config{Balancing: client.Balancing{Algorithm: client.RoundRobin, Outlier: client.Outlier{Consecutive: 3, BaseEjection: time.Minute}}},
		client.WithWatcher(reg), client.WithoutTracing(),
		client.WithPolicies(policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})))
	allReady(t, conn, bs...)
	bad.calls.Store(0)
	bad.fail.Store(true) // answers UNAVAILABLE, connection stays up

	if failed, err := load(conn, 2, 300, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	if n := bad.calls.Load(); n < 3 {
		t.Fatalf("the failing instance got %d calls, want at least 3 before ejection", n)
	}
	ejectedAt := bad.calls.Load()
	if failed, err := load(conn, 2, 300, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	if n := bad.calls.Load() - ejectedAt; n != 0 {
		t.Fatalf("the ejected instance got %d more calls", n)
	}
}

func TestGRPCSlowInstance(t *testing.T) {
	reg := newRegistry(t)
	bs := startFleet(t, reg, startGRPC, 2*time.Millisecond, "a", "b", "slow")
	slow := bs[2]
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing())
	allReady(t, conn, bs...)
	slow.delay.Store(int64(20 * time.Millisecond))
	for _, b := range bs {
		b.calls.Store(0)
	}
	if failed, err := load(conn, 4, 1000, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	share := float64(slow.calls.Load()) / float64(bs[0].calls.Load()+bs[1].calls.Load()+slow.calls.Load())
	// An even spread would give it a third; a loaded CI machine blurs the
	// tenfold difference, so the bound leaves room for that.
	if share > 0.15 {
		t.Fatalf("the slow instance got %.1f%% of the calls, want < 15%% (an even share is 33%%): %v", 100*share, counts(bs...))
	}
}

func TestGRPCCanaryPinSticky(t *testing.T) {
	reg := newRegistry(t)
	stable := []*backend{startGRPC(t, "s1"), startGRPC(t, "s2"), startGRPC(t, "s3")}
	canary := startGRPC(t, "canary")
	for _, b := range stable {
		register(t, reg, b.instance(svc, map[string]string{discovery.MetaVersion: "v1"}))
	}
	register(t, reg, canary.instance(svc, map[string]string{discovery.MetaVersion: "canary"}))
	conn := dial(t, client.Config{Balancing: client.Balancing{
		Canary: &client.Canary{Weight: 0.05},
		Pin:    &client.Pin{},
		Sticky: &client.Sticky{},
	}}, client.WithWatcher(reg), client.WithoutTracing())
	allReady(t, conn, append(stable, canary)...)

	t.Run("canary weight", func(t *testing.T) {
		canary.calls.Store(0)
		for _, b := range stable {
			b.calls.Store(0)
		}
		const n = 10000
		if failed, err := load(conn, 8, n, nil); failed > 0 {
			t.Fatalf("%d calls failed: %v", failed, err)
		}
		got := canary.calls.Load()
		sd := math.Sqrt(n * 0.05 * 0.95)
		if math.Abs(float64(got)-n*0.05) > 5*sd {
			t.Fatalf("canary got %d of %d calls, want %d ± %.0f", got, n, n/20, 5*sd)
		}
	})

	t.Run("pin", func(t *testing.T) {
		before := canary.calls.Load()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "vitamin-pin", "canary")
		for range 100 {
			if err := check(ctx, conn); err != nil {
				t.Fatal(err)
			}
		}
		if got := canary.calls.Load() - before; got != 100 {
			t.Fatalf("pinned calls reached the canary %d times of 100", got)
		}
		ctx = metadata.AppendToOutgoingContext(context.Background(), "vitamin-pin", "v9")
		err := check(ctx, conn)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"orders"`) || !strings.Contains(err.Error(), "version=v9") {
			t.Fatalf("call pinned to a missing version: %v, want UNAVAILABLE naming the service and subset", err)
		}
	})

	t.Run("sticky", func(t *testing.T) {
		groups := map[string]int{}
		for k := range 40 {
			key := "user-" + itoa(k)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "vitamin-sticky-key", key)
			var got string
			for range 5 {
				before := canary.calls.Load()
				if err := check(ctx, conn); err != nil {
					t.Fatal(err)
				}
				g := "v1"
				if canary.calls.Load() != before {
					g = "canary"
				}
				if got != "" && g != got {
					t.Fatalf("key %s landed on %s, then on %s", key, got, g)
				}
				got = g
			}
			groups[got]++
		}
		if len(groups) != 2 {
			t.Fatalf("40 keys landed on groups %v, want both", groups)
		}
	})
}

func TestGRPCEmptySetFailsFastAndRecovers(t *testing.T) {
	reg := newRegistry(t)
	a := startGRPC(t, "a")
	ra := register(t, reg, a.instance(svc, nil))
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing())
	vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })

	if err := ra.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The call carries a long deadline: failing fast means UNAVAILABLE,
	// not DEADLINE_EXCEEDED.
	vitamintest.Eventually(t, 5*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := check(ctx, conn)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"orders"`) {
			return fmt.Errorf("got %v, want UNAVAILABLE naming the service", err)
		}
		return nil
	})

	b := startGRPC(t, "b")
	register(t, reg, b.instance(svc, nil))
	vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })
	if b.calls.Load() == 0 {
		t.Fatal("the returning instance got no call")
	}
}

// TestGRPCEmptySetUnderPolicy checks that a policy neither retries calls
// that found no instance nor lets them open its circuit, which would keep
// the returning instances waiting for the breaker.
func TestGRPCEmptySetUnderPolicy(t *testing.T) {
	reg := newRegistry(t)
	pol := policies(t, emptySetPolicy)
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithPolicies(pol), client.WithoutTracing())
	for range 20 {
		err := check(context.Background(), conn)
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"orders"`) {
			t.Fatalf("got %v, want UNAVAILABLE naming the service", err)
		}
	}
	checkEmptySetSnapshot(t, pol.For(svc, "grpc.health.v1.Health/Check").Snapshot())
	for range 20 {
		_, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream: got %v, want UNAVAILABLE", err)
		}
	}
	if c := pol.For(svc, "grpc.health.v1.Health/Watch").Snapshot().Circuit; c != "closed" {
		t.Fatalf("streams without instances left the circuit %s", c)
	}

	b := startGRPC(t, "b")
	register(t, reg, b.instance(svc, nil))
	vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })
}

func TestConfigErrors(t *testing.T) {
	reg := newRegistry(t)
	tests := []struct {
		name  string
		cfg   client.Config
		opts  []client.Option
		field string
	}{
		{"no watcher", client.Config{}, nil, "WithWatcher"},
		{"bad algorithm", client.Config{Balancing: client.Balancing{Algorithm: "random"}}, []client.Option{client.WithWatcher(reg)}, "Config.Balancing.Algorithm"},
		{"bad share", client.Config{Balancing: client.Balancing{Outlier: client.Outlier{MaxEjectedShare: 2}}}, []client.Option{client.WithWatcher(reg)}, "Config.Balancing.Outlier.MaxEjectedShare"},
		{"bad canary", client.Config{Balancing: client.Balancing{Canary: &client.Canary{Weight: -1}}}, []client.Option{client.WithWatcher(reg)}, "Config.Balancing.Canary.Weight"},
		{"bad caller", client.Config{}, []client.Option{client.WithWatcher(reg), client.WithCaller("check out")}, "WithCaller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grpcOpts := make([]client.GRPCOption, len(tt.opts))
			httpOpts := make([]client.HTTPOption, len(tt.opts))
			for i, o := range tt.opts {
				grpcOpts[i], httpOpts[i] = o, o
			}
			_, err := client.NewGRPC(context.Background(), svc, tt.cfg, grpcOpts...)
			var fe *client.FieldError
			if !errors.Is(err, client.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("NewGRPC: %v, want a *FieldError for %s", err, tt.field)
			}
			_, err = client.NewHTTP(svc, tt.cfg, httpOpts...)
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("NewHTTP: %v, want a *FieldError for %s", err, tt.field)
			}
			if strings.HasPrefix(tt.field, "Config.") {
				if err := tt.cfg.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("Validate: %v, want a *FieldError for %s", err, tt.field)
				}
			}
		})
	}
}

func TestGRPCRetriesGoToOtherInstances(t *testing.T) {
	reg := newRegistry(t)
	bad1, bad2, good := startGRPC(t, "bad1"), startGRPC(t, "bad2"), startGRPC(t, "good")
	for _, b := range []*backend{bad1, bad2, good} {
		register(t, reg, b.instance(svc, nil))
	}
	bad1.fail.Store(true)
	bad2.fail.Store(true)
	// Failing instances answer fastest and nothing penalises them: only
	// the rule that a retry goes elsewhere gets every call to "good".
	conn := dial(t, client.Config{Balancing: client.Balancing{FailurePenalty: time.Nanosecond, Outlier: client.Outlier{Disabled: true}}},
		client.WithWatcher(reg), client.WithoutTracing(),
		client.WithPolicies(policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})))
	vitamintest.Eventually(t, 5*time.Second, func() error {
		if err := conn.Invoke(context.Background(), "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}); err != nil {
			return err
		}
		return nil
	})
	good.calls.Store(0)
	if failed, err := load(conn, 2, 200, nil); failed > 0 {
		t.Fatalf("%d of 200 calls failed: %v", failed, err)
	}
	if good.calls.Load() != 200 {
		t.Fatalf("the healthy instance served %d of 200 calls", good.calls.Load())
	}
	if bad1.calls.Load()+bad2.calls.Load() == 0 {
		t.Fatal("no call hit a failing instance: the test proves nothing")
	}
}

func TestGRPCHedgeGoesToAnotherInstance(t *testing.T) {
	reg := newRegistry(t)
	slow, fast := startGRPC(t, "slow"), startGRPC(t, "fast")
	slow.delay.Store(int64(50 * time.Millisecond))
	register(t, reg, slow.instance(svc, nil))
	register(t, reg, fast.instance(svc, nil))
	conn := dial(t, client.Config{Balancing: client.Balancing{Algorithm: client.RoundRobin}},
		client.WithWatcher(reg), client.WithoutTracing(),
		client.WithPolicies(policies(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: 2 * time.Millisecond}})))
	vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })
	fast.calls.Store(0)
	slow.calls.Store(0)
	for range 20 {
		if err := check(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
	}
	// Every call reaches the fast instance, first or as the hedge of an
	// attempt stuck on the slow one.
	if n := fast.calls.Load(); n < 20 {
		t.Fatalf("the fast instance saw %d of 20 calls: hedges did not reach it", n)
	}
	if slow.calls.Load() == 0 {
		t.Fatal("no attempt went to the slow instance: the test proves nothing")
	}
}

func TestGRPCTraceAndCaller(t *testing.T) {
	reg := newRegistry(t)
	b := startGRPC(t, "a")
	register(t, reg, b.instance(svc, nil))
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithCaller("checkout"),
		client.WithGRPCTracing(tracinggrpc.WithPropagator(propagation.TraceContext{})))
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	if err := echo(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if tp, _ := b.traceparent.Load().(string); !strings.Contains(tp, tid.String()) {
		t.Fatalf("traceparent %q does not carry trace %s", tp, tid)
	}
	if n := b.callerCount("checkout"); n != 1 {
		t.Fatalf("server saw caller %q on %d calls, want 1", "checkout", n)
	}
}

func TestGRPCStream(t *testing.T) {
	reg := newRegistry(t)
	a, b := startGRPC(t, "a"), startGRPC(t, "b")
	register(t, reg, a.instance(svc, nil))
	register(t, reg, b.instance(svc, nil))
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithPolicies(policies(t, resilience.Policy{})))
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("stream: %v %v", resp, err)
		}
		cancel()
	}
}

// flakyWatcher fails its first failures watches, then watches through w.
type flakyWatcher struct {
	discovery.Watcher
	failures int32
	calls    atomic.Int32
}

func (f *flakyWatcher) Watch(ctx context.Context, service string, opts ...discovery.WatchOption) (discovery.Watch, error) {
	if f.calls.Add(1) <= f.failures {
		return nil, errors.New("discovery backend unreachable")
	}
	return f.Watcher.Watch(ctx, service, opts...)
}

func TestGRPCWatchStartsAgainAfterFailures(t *testing.T) {
	reg := newRegistry(t)
	b := startGRPC(t, "a")
	register(t, reg, b.instance(svc, nil))
	w := &flakyWatcher{Watcher: reg, failures: 3}
	conn := dial(t, client.Config{}, client.WithWatcher(w), client.WithoutTracing())
	vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })
	if n := w.calls.Load(); n != 4 {
		t.Errorf("the watch was started %d times, want 4 (3 failures, then one that lasts)", n)
	}
}
