package consul_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counter is an http.RoundTripper that counts requests by "METHOD
// path-prefix" and can be told to fail some of them, as a process cut off
// from its agent would.
type counter struct {
	base http.RoundTripper

	mu     sync.Mutex
	counts map[string]int
	fail   func(*http.Request) bool
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	fail := c.fail != nil && c.fail(r)
	c.mu.Unlock()
	if fail {
		return nil, errCutOff
	}
	resp, err := c.base.RoundTrip(r)
	c.mu.Lock()
	key := r.Method + " " + r.URL.Path
	c.counts[key]++
	if err == nil && resp.StatusCode == http.StatusOK {
		c.counts["ok "+key]++
	}
	c.mu.Unlock()
	return resp, err
}

type cutOffError struct{}

func (cutOffError) Error() string { return "cut off from the agent by the test" }

var errCutOff error = cutOffError{}

// count returns the number of requests whose "METHOD path" starts with
// prefix ("ok " + … counts only 200 answers).
func (c *counter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.counts {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (c *counter) setFail(f func(*http.Request) bool) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

// client returns a Consul client for the agent whose requests go through a
// fresh counter. Its idle connections are closed when the test ends.
func client(t testing.TB, agent *vitamintest.Consul) (*api.Client, *counter) {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c := &counter{base: tr}
	cl, err := api.NewClient(&api.Config{Address: agent.Addr, HttpClient: &http.Client{Transport: c}})
	if err != nil {
		t.Fatal(err)
	}
	return cl, c
}

func newWatcher(t testing.TB, cl *api.Client, cfg consul.WatcherConfig) *consul.Watcher {
	t.Helper()
	if cfg.MaxBackoff == 0 {
		cfg.Backoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	if cfg.SelfPreservation.ConfirmAfter == 0 {
		cfg.SelfPreservation.ConfirmAfter = 20 * time.Millisecond
	}
	w, err := consul.NewWatcher(cl, cfg, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func newRegistrar(t testing.TB, cl *api.Client) *consul.Registrar {
	t.Helper()
	r, err := consul.NewRegistrar(cl, consul.RegistrarConfig{ReconcileInterval: 100 * time.Millisecond}, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func watch(t testing.TB, w discovery.Watcher, service string, opts ...discovery.WatchOption) discovery.Watch {
	t.Helper()
	wa, err := w.Watch(context.Background(), service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wa.Close() })
	return wa
}

// waitFor reads snapshots until cond holds for one, and returns it.
func waitFor(t testing.TB, w discovery.Watch, timeout time.Duration, what string, cond func(discovery.Snapshot) bool) discovery.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last discovery.Snapshot
	for {
		s, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v; last snapshot: %+v", what, err, last)
		}
		if cond(s) {
			return s
		}
		last = s
	}
}

func has(s discovery.Snapshot, id string) bool {
	for _, i := range s.Instances {
		if i.ID == id {
			return true
		}
	}
	return false
}

func fresh(s discovery.Snapshot) bool { return !s.Stale && !s.Preserved }

func deregister(t testing.TB, r discovery.Registered) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Deregister(ctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
}
