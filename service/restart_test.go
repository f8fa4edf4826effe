package service_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestRollingRestartUnderLoad restarts each of three instances in turn
// (SIGTERM, wait for the exit, start a new one) while Vitamin clients
// call them over gRPC and HTTP at a steady rate: no call fails.
func TestRollingRestartUnderLoad(t *testing.T) {
	calls, failed, sample := rollingRestart(t, "serve", 0)
	t.Logf("rolling restart of 3 instances: %d calls, %d failed", calls, failed)
	if failed != 0 {
		t.Errorf("%d of %d calls failed during the rolling restart, such as:\n%s", failed, calls, strings.Join(sample, "\n"))
	}
}

// TestRollingRestartAbruptExitFailsCalls is the counter-test: the same
// restart with instances that exit at once on SIGTERM (no deregistration,
// no drain) fails calls, so the test above could fail.
func TestRollingRestartAbruptExitFailsCalls(t *testing.T) {
	calls, failed, _ := rollingRestart(t, "abrupt", 3)
	t.Logf("rolling restart of 3 instances that exit at once on SIGTERM: %d calls, %d failed", calls, failed)
	if failed == 0 {
		t.Errorf("no call of %d failed although the instances exited at once on SIGTERM", calls)
	}
}

// rollingRestart runs three instances of mode in their own processes,
// registered in a real Consul agent, calls them through client.NewGRPC and
// client.NewHTTP every 10ms each, restarts each in turn, and returns the
// calls made, the failed ones and a few of their errors.
func rollingRestart(t *testing.T, mode string, wantExit int) (calls, failed int64, sample []string) {
	agent := vitamintest.StartConsul(t)
	gen := 0
	start := func(slot int) (*vitamintest.Process, string) {
		gen++
		id := fmt.Sprintf("roll-%d-%d", slot, gen)
		c := startChild(t, id, mode, envID+"="+id, envConsul+"="+agent.Addr, envDelay+"=50ms")
		c.Await(t, "READY", 30*time.Second)
		return c, id
	}
	procs := make([]*vitamintest.Process, 3)
	ids := make([]string, 3)
	for i := range procs {
		procs[i], ids[i] = start(i)
	}
	waitPassing(t, agent, ids)

	w, err := consul.NewWatcher(agent.Client, consul.WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	ctx := context.Background()
	conn, err := client.NewGRPC(ctx, "roll", client.Config{}, client.WithWatcher(w, discovery.WithTags(service.ProtocolGRPC)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := client.NewHTTP("roll", client.Config{}, client.WithWatcher(w, discovery.WithTags(service.ProtocolHTTP)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.CloseHTTP(hc) }()

	l := startLoad(conn, hc)
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if n := l.ok.Load(); n < 100 {
			return fmt.Errorf("%d calls answered, want 100 before the restart", n)
		}
		return nil
	})
	for i := range procs {
		sent := time.Now()
		procs[i].Signal(t, syscall.SIGTERM)
		if code := procs[i].Wait(t, 30*time.Second); code != wantExit {
			t.Fatalf("%s exited with status %d after SIGTERM, want %d", ids[i], code, wantExit)
		}
		t.Logf("%s: SIGTERM → exit %v; phases %v", ids[i], time.Since(sent).Round(time.Millisecond), phases(procs[i]))
		procs[i], ids[i] = start(i)
		waitPassing(t, agent, ids)
	}
	// Calls keep going a little after the last restart, so that the last
	// new instance takes some too.
	after := l.ok.Load()
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if n := l.ok.Load() - after; n < 50 {
			return fmt.Errorf("%d calls answered after the last restart, want 50", n)
		}
		return nil
	})
	return l.stop()
}

// waitPassing waits until Consul lists exactly the HTTP and gRPC
// instances of ids as passing.
func waitPassing(t *testing.T, agent *vitamintest.Consul, ids []string) {
	t.Helper()
	var want []string
	for _, id := range ids {
		want = append(want, id+"-grpc", id+"-http")
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		entries, _, err := agent.Client.Health().Service("roll", "", true, nil)
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, e := range entries {
			got[e.Service.ID] = true
		}
		for _, id := range want {
			if !got[id] {
				return fmt.Errorf("%s is not passing in Consul (passing: %v)", id, got)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("passing in Consul: %v, want %v", got, want)
		}
		return nil
	})
}

// load calls the service over gRPC and HTTP every 10ms each, each call in
// its own goroutine (so a slow call does not slow the rate), and counts
// the answers and the failures.
type load struct {
	ok, failed atomic.Int64
	stopped    chan struct{}
	loop       sync.WaitGroup
	inflight   sync.WaitGroup

	mu     sync.Mutex
	sample []string
}

func startLoad(conn *grpc.ClientConn, hc *http.Client) *load {
	l := &load{stopped: make(chan struct{})}
	grpcCall := func(ctx context.Context) error {
		return conn.Invoke(ctx, "/"+echoService+"/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	}
	httpCall := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://roll/work", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil
	}
	l.loop.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stopped:
				return
			case <-tick.C:
			}
			for name, call := range map[string]func(context.Context) error{"gRPC": grpcCall, "HTTP": httpCall} {
				l.inflight.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if err := call(ctx); err != nil {
						l.failed.Add(1)
						l.mu.Lock()
						if len(l.sample) < 5 {
							l.sample = append(l.sample, name+": "+err.Error())
						}
						l.mu.Unlock()
						return
					}
					l.ok.Add(1)
				})
			}
		}
	})
	return l
}

// stop ends the load, waits for the calls in flight and returns the
// calls made, the failed ones and a few errors.
func (l *load) stop() (calls, failed int64, sample []string) {
	close(l.stopped)
	l.loop.Wait()
	l.inflight.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load() + l.failed.Load(), l.failed.Load(), l.sample
}
