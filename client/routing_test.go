package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// canaryPhases are the canary weights TestRoutingFollowsUpdatesUnderLoad
// goes through, callsPerPhase calls each.
var canaryPhases = []float64{0, 0.1, 0}

const callsPerPhase = 4000

// routingFleet starts four stable instances and a canary with start and
// registers them; it returns the canary's instance ID.
func routingFleet(t *testing.T, start func(testing.TB, string) *backend) (*routingSetup, string) {
	reg := newRegistry(t)
	s := &routingSetup{reg: reg, byAddr: map[string]string{}}
	for _, id := range []string{"s1", "s2", "s3", "s4", "canary"} {
		b := start(t, id)
		version := "v1"
		if id == "canary" {
			version = "canary"
		} else {
			s.stable = append(s.stable, b)
		}
		inst := b.instance(svc, map[string]string{discovery.MetaVersion: version})
		s.byAddr[inst.Endpoint()] = id
		register(t, reg, inst)
	}
	routing, err := client.NewRouting(client.Balancing{Canary: &client.Canary{Weight: canaryPhases[0]}})
	if err != nil {
		t.Fatal(err)
	}
	s.routing = routing
	return s, "canary"
}

type routingSetup struct {
	reg     discovery.Watcher
	routing *client.Routing
	byAddr  map[string]string // instance address → ID
	stable  []*backend
}

// TestRoutingFollowsUpdatesUnderLoad changes the canary weight from 0 to
// 10% and back to 0 through a Routing while 8 goroutines call: calls that
// start after an update are routed by it (none reaches the canary at 0%,
// about 10% do at 10%), and no call fails.
func TestRoutingFollowsUpdatesUnderLoad(t *testing.T) {
	t.Run("grpc", func(t *testing.T) {
		s, canary := routingFleet(t, startGRPC)
		conn := dial(t, client.Config{}, client.WithWatcher(s.reg), client.WithoutTracing(),
			client.WithRouting(s.routing), client.WithPolicies(policies(t, frozenPolicy)))
		// Until a stable instance is connected, calls go to any instance.
		allReady(t, conn, s.stable...)
		routedLoad(t, s, canary, func(ctx context.Context) (string, error) {
			var p peer.Peer
			err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.Peer(&p))
			if err != nil {
				return "", err
			}
			return s.byAddr[p.Addr.String()], nil
		})
	})
	t.Run("http", func(t *testing.T) {
		s, canary := routingFleet(t, startHTTP)
		hc := newHTTP(t, client.Config{}, client.WithWatcher(s.reg), client.WithoutTracing(),
			client.WithRouting(s.routing), client.WithPolicies(policies(t, frozenPolicy)))
		routedLoad(t, s, canary, func(ctx context.Context) (string, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/x", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			id, err := io.ReadAll(resp.Body)
			return string(id), err
		})
	})
}

// routedLoad runs len(canaryPhases) × callsPerPhase calls of call (which
// returns the ID of the instance that served it) from 8 goroutines; the
// call that starts a phase updates the routing to the phase's weight
// first, while the others go on calling. It checks each phase's canary
// share over the calls that began and ended within the phase (a sequence
// count, odd while an update is being made, tells them), and that no call
// failed.
func routedLoad(t *testing.T, s *routingSetup, canary string, call func(context.Context) (string, error)) {
	t.Helper()
	var (
		next   atomic.Int64
		seq    atomic.Int64 // 2 × the phase, +1 while the update is made
		mu     sync.Mutex
		byPh   = make([]map[string]int, len(canaryPhases))
		failed []error
		wg     sync.WaitGroup
	)
	for i := range byPh {
		byPh[i] = map[string]int{}
	}
	total := int64(len(canaryPhases) * callsPerPhase)
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if i > 0 && i%callsPerPhase == 0 {
					p := int(i / callsPerPhase)
					seq.Add(1)
					if err := s.routing.Update(client.Balancing{Canary: &client.Canary{Weight: canaryPhases[p]}}); err != nil {
						t.Error(err)
					}
					seq.Add(1)
				}
				before := seq.Load()
				id, err := call(context.Background())
				after := seq.Load()
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err)
				case before == after && before%2 == 0:
					byPh[before/2][id]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d calls failed during the routing changes; first: %v", len(failed), failed[0])
	}
	for p, w := range canaryPhases {
		n := 0
		for _, c := range byPh[p] {
			n += c
		}
		got := byPh[p][canary]
		sd := math.Sqrt(float64(n) * w * (1 - w))
		t.Logf("canary weight %.0f%%: the canary served %d of %d calls: %v", 100*w, got, n, byPh[p])
		if math.Abs(float64(got)-float64(n)*w) > 5*sd {
			t.Errorf("at canary weight %.0f%%, the canary served %d of %d calls, want %.0f ± %.0f", 100*w, got, n, float64(n)*w, 5*sd)
		}
	}
}

// TestGuardPullsAFailingCanary: a canary that fails 20% of its calls (HTTP
// 500), beside four healthy instances, with 10% of the calls and the
// README's policy: the confidence guard pulls it within a bounded number of
// canary calls, says why (handler, log, the client's state), no call
// fails (the policy retries the canary's failures on the baseline), and no
// unpinned call reaches the canary afterwards.
func TestGuardPullsAFailingCanary(t *testing.T) {
	reg := newRegistry(t)
	var canaryCalls atomic.Int64
	var n atomic.Int64
	for _, id := range []string{"s1", "s2", "s3", "s4", "canary"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id == "canary" {
				canaryCalls.Add(1)
				if n.Add(1)%5 == 0 {
					http.Error(w, "boom", http.StatusInternalServerError)
					return
				}
			}
			fmt.Fprint(w, id)
		}))
		t.Cleanup(srv.Close)
		version := "v1"
		if id == "canary" {
			version = "canary"
		}
		announceHTTP(t, reg, id, srv, version)
	}
	events := make(chan client.GuardEvent, 1)
	monitor := client.NewMonitor()
	var logs vitamintest.Buffer
	hc := newHTTP(t, client.Config{Balancing: client.Balancing{Canary: &client.Canary{Weight: 0.1, Guard: &client.Guard{}}}},
		client.WithWatcher(reg), client.WithoutTracing(), client.WithMonitor(monitor),
		client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		client.WithGuardHandler(func(ev client.GuardEvent) { events <- ev }),
		client.WithPolicies(policies(t, resilience.Policy{Timeout: time.Second, Retry: &resilience.Retry{MaxAttempts: 3}, Budget: &resilience.Budget{}})))
	get := func() (string, error) {
		resp, err := hc.Get("http://orders/x")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), err
	}
	var pulledAt int64
	failed, err := runLoad(8, 20000, func(int64) {
		if pulledAt == 0 {
			select {
			case ev := <-events:
				events <- ev
				pulledAt = canaryCalls.Load()
			default:
			}
		}
	}, func() error { _, err := get(); return err })
	if failed > 0 {
		t.Fatalf("%d calls failed; first: %v", failed, err)
	}
	var ev client.GuardEvent
	select {
	case ev = <-events:
	case <-time.After(5 * time.Second):
		t.Fatalf("the canary was not pulled after %d canary calls; log:\n%s", canaryCalls.Load(), logs.String())
	}
	t.Logf("pulled after about %d canary calls: %s (window %d, p %.2g); canary %+v; baseline %+v",
		pulledAt, ev.Detail, ev.Window, ev.P, ev.CanaryStats, ev.Baseline)
	if ev.Reason != "errors" || ev.Canary != "version=canary" || ev.Service != svc {
		t.Errorf("event %+v, want errors of version=canary of %s", ev, svc)
	}
	if pulledAt > 800 {
		t.Errorf("pulled after %d canary calls, want within the first three windows (700, and the calls in flight)", pulledAt)
	}
	if !strings.Contains(logs.String(), "confidence guard pulled the canary") {
		t.Errorf("no log line for the pull:\n%s", logs.String())
	}
	var st *client.GuardState
	for _, s := range monitor.Snapshot() {
		if s.Canary != nil {
			st = s.Canary.Guard
		}
	}
	if st == nil || st.Pulled == nil || st.Pulled.Reason != "errors" {
		t.Errorf("the client's state does not show the pull: %+v", st)
	}
	before := canaryCalls.Load()
	for range 1000 {
		if id, err := get(); err != nil || id == "canary" {
			t.Fatalf("after the pull: %q, %v", id, err)
		}
	}
	if got := canaryCalls.Load() - before; got != 0 {
		t.Errorf("%d calls reached the pulled canary", got)
	}
}

// announceHTTP registers srv as instance id of svc with the given version.
func announceHTTP(t *testing.T, reg *vitamintest.Registry, id string, srv *httptest.Server, version string) {
	t.Helper()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	register(t, reg, discovery.Instance{ID: id, Service: svc, Address: "127.0.0.1", Port: port, Meta: map[string]string{discovery.MetaVersion: version}})
}
