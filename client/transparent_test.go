package client_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
)

// deadInstance is an instance of svc at a loopback port nothing listens
// on: connecting to it is refused.
func deadInstance(t *testing.T, id string) discovery.Instance {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	_ = lis.Close()
	return discovery.Instance{ID: id, Service: svc, Address: "127.0.0.1", Port: port}
}

// dialCounter is a base transport that counts its dials by address.
type dialCounter struct {
	mu sync.Mutex
	n  map[string]int
	*http.Transport
}

func newDialCounter(t *testing.T) *dialCounter {
	d := &dialCounter{n: map[string]int{}}
	d.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.mu.Lock()
		d.n[addr]++
		d.mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(d.CloseIdleConnections)
	return d
}

func (d *dialCounter) to(addrs ...string) (n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range addrs {
		n += d.n[a]
	}
	return n
}

// echoServer answers each request with its method and body.
func echoServer(t *testing.T, id string) discovery.Instance {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+string(b))
	}))
	t.Cleanup(s.Close)
	return discovery.Instance{ID: id, Service: svc, Address: "127.0.0.1", Port: s.Listener.Addr().(*net.TCPAddr).Port}
}

// noEjection keeps refusing instances in rotation, so that calls keep
// meeting them.
var noEjection = client.Config{Balancing: client.Balancing{Algorithm: client.RoundRobin, Outlier: client.Outlier{Disabled: true}}}

// TestTransparentRetryIsNotCharged: with two of three instances refusing
// connections, every GET and every POST (which the policy never retries)
// succeeds, and the budget spent nothing: the attempts that were refused
// went on to another instance inside the same attempt.
func TestTransparentRetryIsNotCharged(t *testing.T) {
	reg := newRegistry(t)
	live := echoServer(t, "live")
	register(t, reg, live)
	var dead []string
	for _, id := range []string{"dead-0", "dead-1"} {
		in := deadInstance(t, id)
		register(t, reg, in)
		dead = append(dead, in.Endpoint())
	}
	d := newDialCounter(t)
	pol := policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}, Budget: &resilience.Budget{}})
	hc := newHTTP(t, noEjection, client.WithWatcher(reg), client.WithoutTracing(), client.WithPolicies(pol), client.WithBaseTransport(d))
	const calls = 30
	for i := range calls {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			body := method + " payload-" + itoa(i)
			if method == http.MethodGet {
				body = "GET "
			}
			code, got, err := send(hc, method, strings.TrimPrefix(body, method+" "))
			if err != nil || code != 200 || got != body {
				t.Fatalf("%s %d: %d %q %v; want 200 %q", method, i, code, got, err, body)
			}
		}
	}
	if n := d.to(dead...); n < calls/2 {
		t.Fatalf("%d dials to the refusing instances in %d calls: the test did not exercise transparent retries", n, 2*calls)
	}
	s := pol.For(svc, "").Snapshot()
	// A new budget holds one retry, lent: the first 5 calls (Ratio 0.2)
	// repay it, and each later one earns 0.2. Nothing was spent.
	if want := 1 + 0.2*(calls-5); s.Retries != 0 || s.BudgetExhausted != 0 || math.Abs(s.BudgetLeft-want) > 1e-9 {
		t.Fatalf("budget after %d GETs: %d retries, %d exhausted, %.2f left; want 0, 0, %.2f", calls, s.Retries, s.BudgetExhausted, s.BudgetLeft, want)
	}
}

// TestTransparentRetryIsBounded: a call tries each refusing instance at
// most once per attempt, and at most 1 + 3 instances per attempt.
func TestTransparentRetryIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dead        int
		policy      *resilience.Policy
		wantDials   int
		perInstance int // the most dials to one instance
	}{
		{"every instance once", 2, nil, 2, 1},
		{"at most four per attempt", 6, nil, 4, 1},
		{"per attempt of the policy", 6, &resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}, Budget: &resilience.Budget{}}, 8, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t)
			var addrs []string
			for i := range tc.dead {
				in := deadInstance(t, "dead-"+itoa(i))
				register(t, reg, in)
				addrs = append(addrs, in.Endpoint())
			}
			d := newDialCounter(t)
			opts := []client.HTTPOption{client.WithWatcher(reg), client.WithoutTracing(), client.WithBaseTransport(d)}
			if tc.policy != nil {
				opts = append(opts, client.WithPolicies(policies(t, *tc.policy)))
			}
			hc := newHTTP(t, noEjection, opts...)
			_, _, err := send(hc, http.MethodGet, "")
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "dial" {
				t.Fatalf("call to refusing instances: %v, want the dial error", err)
			}
			if n := d.to(addrs...); n != tc.wantDials {
				t.Fatalf("%d dials, want %d", n, tc.wantDials)
			}
			for _, a := range addrs {
				if n := d.to(a); n > tc.perInstance {
					t.Fatalf("%d dials to %s, want at most %d: an attempt went to the same instance twice", n, a, tc.perInstance)
				}
			}
		})
	}
}

// send makes one request to svc with body (none if empty) and returns the
// status and the response body.
func send(hc *http.Client, method, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+svc+"/x", r)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
