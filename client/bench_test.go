package client_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// BenchmarkUnary compares one unary call over an in-process listener made
// with bare grpc-go and with Vitamin's client (discovery, balancer, caller
// identity; no tracing): without a policy, with retry and circuit breaker,
// and with a per-attempt timeout on top. The budget: ≤ 1.05 × bare
// latency, ≤ +25 allocs. The ratio sub-benchmarks interleave bare and
// Vitamin calls so that both see the same machine.
func BenchmarkUnary(b *testing.B) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	dialer := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })

	bare, err := grpc.NewClient("passthrough:///bufnet", dialer, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()

	reg := newRegistry(b)
	register(b, reg, discovery.Instance{ID: "inventory-1", Service: "inventory", Address: "127.0.0.1", Port: 1})
	retryBreaker := resilience.Policy{
		Retry:          &resilience.Retry{MaxAttempts: 3},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 100, FailureRate: 0.5, MinRequests: 20, OpenFor: time.Second},
	}
	withTimeout := retryBreaker
	withTimeout.Timeout = time.Second
	// A policy with a timeout sends a deadline with each call, which costs
	// grpc-go itself (grpc-timeout header, timers on both sides): its bare
	// reference calls carry the same deadline, so the ratio is Vitamin's.
	variants := []struct {
		name     string
		deadline time.Duration
		opts     []client.GRPCOption
	}{
		{"no-policy", 0, nil},
		{"retry+breaker", 0, []client.GRPCOption{client.WithPolicies(policies(b, retryBreaker))}},
		{"retry+breaker+timeout", withTimeout.Timeout, []client.GRPCOption{client.WithPolicies(policies(b, withTimeout))}},
	}
	req := &healthpb.HealthCheckRequest{}
	call := func(conn *grpc.ClientConn, deadline time.Duration) {
		ctx := context.Background()
		if deadline > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, deadline)
			defer cancel()
		}
		var resp healthpb.HealthCheckResponse
		if err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", req, &resp); err != nil {
			b.Fatal(err)
		}
	}
	call(bare, 0)
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(bare, 0)
		}
	})
	b.Run("bare+deadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(bare, withTimeout.Timeout)
		}
	})
	for _, v := range variants {
		conn, err := client.NewGRPC(context.Background(), "inventory", client.Config{}, append([]client.GRPCOption{client.WithWatcher(reg),
			client.WithCaller("bench"), client.WithoutTracing(), client.WithDialOptions(dialer)}, v.opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		call(conn, 0)
		b.Run("vitamin/"+v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				call(conn, 0)
			}
		})
		b.Run("ratio/"+v.name, func(b *testing.B) {
			var tb, tv []time.Duration
			timed := func(conn *grpc.ClientConn, deadline time.Duration) time.Duration {
				s := time.Now()
				call(conn, deadline)
				return time.Since(s)
			}
			// Each pair of calls swaps the order, so that neither side
			// always pays for (or profits from) the other going first.
			odd := false
			for b.Loop() {
				if odd {
					tv = append(tv, timed(conn, 0))
					tb = append(tb, timed(bare, v.deadline))
				} else {
					tb = append(tb, timed(bare, v.deadline))
					tv = append(tv, timed(conn, 0))
				}
				odd = !odd
			}
			// The mean ratio, and the ratio of the medians, which a
			// preemption or a GC pause landing on one side moves less.
			b.ReportMetric(float64(sum(tv))/float64(sum(tb)), "vitamin/bare")
			slices.Sort(tb)
			slices.Sort(tv)
			b.ReportMetric(float64(tv[len(tv)/2])/float64(tb[len(tb)/2]), "p50-vitamin/bare")
		})
	}
}

func sum(d []time.Duration) (s time.Duration) {
	for _, x := range d {
		s += x
	}
	return s
}

// latencies runs n calls from workers goroutines and returns their sorted
// latencies.
func latencies(b *testing.B, conn *grpc.ClientConn, workers, n int) []time.Duration {
	var next atomic.Int64
	out := make([]time.Duration, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := time.Now()
				if err := check(context.Background(), conn); err != nil {
					b.Error(err)
					return
				}
				out[i] = time.Since(s)
			}
		})
	}
	wg.Wait()
	slices.Sort(out)
	return out
}

func p99(d []time.Duration) float64 { return float64(d[len(d)*99/100]) / float64(time.Millisecond) }

// BenchmarkSlowInstance measures the p99 latency with five instances at
// 1 ms, then with one of them at 10 ms, for Vitamin's balancer and for
// round robin. The budget: p99 with the slow instance ≤ 1.5 × all-healthy.
// Each iteration runs the three cases in turn, three times, with 2,000
// measured calls from 8 goroutines each time, and takes the p99 of each
// case over its 6,000 calls: a moment of machine noise then weighs on all
// three alike. It also reports the slow instance's share of the measured
// calls under Vitamin's balancer: above 1%, the p99 is the slow
// instance's latency.
func BenchmarkSlowInstance(b *testing.B) {
	const calls, workers, rounds = 2000, 8, 3
	var slowCalls atomic.Int64
	run := func(alg client.Algorithm, slow bool) []time.Duration {
		reg := newRegistry(b)
		bs := startFleet(b, reg, startGRPC, time.Millisecond, "i0", "i1", "i2", "i3", "i4")
		if slow {
			bs[0].delay.Store(int64(10 * time.Millisecond))
		}
		conn, err := client.NewGRPC(context.Background(), svc, client.Config{Balancing: client.Balancing{Algorithm: alg}},
			client.WithWatcher(reg), client.WithoutTracing())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		latencies(b, conn, workers, 200) // warm up: connections and estimates
		defer func() {
			for _, be := range bs {
				be.Stop()
			}
		}()
		before := bs[0].calls.Load()
		lat := latencies(b, conn, workers, calls)
		if slow && alg == client.PowerOfTwo {
			slowCalls.Add(bs[0].calls.Load() - before)
		}
		return lat
	}
	var healthy, p2c, rr, share float64
	for b.Loop() {
		slowCalls.Store(0)
		var h, p, r []time.Duration
		for range rounds {
			h = append(h, run(client.PowerOfTwo, false)...)
			p = append(p, run(client.PowerOfTwo, true)...)
			r = append(r, run(client.RoundRobin, true)...)
		}
		for _, d := range [][]time.Duration{h, p, r} {
			slices.Sort(d)
		}
		healthy, p2c, rr = p99(h), p99(p), p99(r)
		share = float64(slowCalls.Load()) / float64(len(p))
	}
	b.ReportMetric(healthy, "p99-healthy-ms")
	b.ReportMetric(p2c, "p99-slow-p2c-ms")
	b.ReportMetric(rr, "p99-slow-rr-ms")
	b.ReportMetric(p2c/healthy, "p2c/healthy")
	b.ReportMetric(100*share, "slow-share-%")
}

// victimWatch records when attempts went to one address (a stats handler
// sees each attempt's peer).
type victimWatch struct {
	addr     string
	last     atomic.Int64 // unix nanoseconds of the last attempt to addr
	attempts atomic.Int64
}

func (v *victimWatch) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (v *victimWatch) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.OutHeader); ok && h.Client && h.RemoteAddr != nil && h.RemoteAddr.String() == v.addr {
		v.last.Store(time.Now().UnixNano())
		v.attempts.Add(1)
	}
}
func (v *victimWatch) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (v *victimWatch) HandleConn(context.Context, stats.ConnStats)                       {}

// BenchmarkKillUnderLoad kills one of three backend processes (SIGKILL)
// while 16 goroutines call at full speed through the README's policy
// (1 s timeout, 3 attempts, the default retry budget), and reports the
// calls that failed (budget 0) and the time from the kill to the last
// attempt sent to the dead instance (budget ≤ 1 s).
func BenchmarkKillUnderLoad(b *testing.B) {
	var failedTotal int64
	var worst time.Duration
	for b.Loop() {
		reg := newRegistry(b)
		var bs []*procBackend
		for _, id := range []string{"k0", "k1", "k2"} {
			p := startProcBackend(b, "grpc", id)
			register(b, reg, p.instance(svc, nil))
			bs = append(bs, p)
		}
		victim := bs[2]
		vw := &victimWatch{addr: "127.0.0.1:" + itoa(victim.port)}
		conn, err := client.NewGRPC(context.Background(), svc, client.Config{}, client.WithWatcher(reg), client.WithoutTracing(),
			client.WithDialOptions(grpc.WithStatsHandler(vw)),
			client.WithPolicies(policies(b, resilience.Policy{
				Timeout: time.Second,
				Retry:   &resilience.Retry{MaxAttempts: 3},
				Budget:  &resilience.Budget{},
			})))
		if err != nil {
			b.Fatal(err)
		}
		var killedAt atomic.Int64
		failed, _ := load(conn, 16, 3000, func(i int64) {
			if i == 1000 {
				victim.Kill()
				killedAt.Store(time.Now().UnixNano())
			}
		})
		failedTotal += failed
		if d := time.Duration(vw.last.Load() - killedAt.Load()); d > worst {
			worst = d
		}
		_ = conn.Close()
		for _, p := range bs {
			p.Kill()
		}
	}
	b.ReportMetric(float64(failedTotal), "failed-calls")
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "ms-to-no-new-calls")
}

// BenchmarkDiscoveryChange measures how long a newly registered instance
// takes to reach the picker (the first call that lands on it), with Consul
// and with the in-memory registry. Budget: p99 < 200 ms.
func BenchmarkDiscoveryChange(b *testing.B) {
	b.Run("consul", func(b *testing.B) {
		c := vitamintest.StartConsul(b)
		discoveryChange(b, newConsulWatcher(b, c), newConsulRegistrar(b, c))
	})
	b.Run("memory", func(b *testing.B) {
		reg := newRegistry(b)
		discoveryChange(b, reg, reg)
	})
}

func discoveryChange(b *testing.B, w discovery.Watcher, r discovery.Registrar) {
	first := startHTTP(b, "first")
	register(b, r, first.instance(svc, nil))
	hc := newHTTP(b, client.Config{}, client.WithWatcher(w), client.WithoutTracing(),
		client.WithPolicies(policies(b, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})))
	var ds []time.Duration
	for b.Loop() {
		be := startHTTP(b, "new-"+itoa(len(ds)))
		s := time.Now()
		reg := register(b, r, be.instance(svc, nil))
		for be.calls.Load() == 0 {
			if code, _, err := get(hc, "GET", "http://orders/x", nil); err != nil || code != 200 {
				b.Fatal(code, err)
			}
		}
		ds = append(ds, time.Since(s))
		_ = reg.Deregister(context.Background())
		be.Stop()
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)*99/100])/float64(time.Millisecond), "p99-ms")
}
