package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func newHTTP(t testing.TB, cfg client.Config, opts ...client.HTTPOption) *http.Client {
	t.Helper()
	hc, err := client.NewHTTP(svc, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseHTTP(hc) })
	return hc
}

// attempts counts the requests the client sends to each address.
type attempts struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func newAttempts() *attempts {
	return &attempts{base: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}}
}

func (a *attempts) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.n[r.URL.Host]++
	a.mu.Unlock()
	return a.base.RoundTrip(r)
}

func (a *attempts) to(b *backend) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[fmt.Sprintf("127.0.0.1:%d", b.port)]
}

func (a *attempts) CloseIdleConnections() {
	a.base.(*http.Transport).CloseIdleConnections()
}

func get(hc *http.Client, method, target string, header http.Header) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// loadHTTP sends n GETs from workers goroutines and returns how many failed
// (error or non-200), with the first failure.
func loadHTTP(hc *http.Client, workers, n int, during func(i int64)) (int64, error) {
	return runLoad(workers, n, during, func() error {
		code, _, err := get(hc, http.MethodGet, "http://orders/v1/orders/42", nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
}

func TestHTTPSpreadAndCaller(t *testing.T) {
	reg := newRegistry(t)
	bs := startFleet(t, reg, startHTTP, time.Millisecond, "a", "b", "c") // equal service times
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithCaller("checkout"))
	if failed, err := loadHTTP(hc, 4, 600, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	for _, b := range bs {
		n := b.calls.Load()
		if n < 60 {
			t.Errorf("instance %s answered %d of 600 calls: %v", b.id, n, counts(bs...))
		}
		if c := b.callerCount("checkout"); int64(c) != n {
			t.Errorf("instance %s saw the caller header on %d of %d calls", b.id, c, n)
		}
	}
}

func TestHTTPKillUnderLoad(t *testing.T) {
	reg := newRegistry(t)
	bs := startFleet(t, reg, startHTTP, time.Millisecond, "a", "b", "victim")
	victim := bs[2]
	at := newAttempts()
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithBaseTransport(at), client.WithoutTracing(),
		client.WithPolicies(policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})))

	failed, err := loadHTTP(hc, 6, 900, func(i int64) {
		if i == 300 {
			victim.Stop()
		}
	})
	if failed > 0 {
		t.Fatalf("%d calls failed after an instance was killed: %v", failed, err)
	}
	// Once ejected, the dead instance gets no new attempt.
	vitamintest.Eventually(t, 15*time.Second, func() error {
		before := at.to(victim)
		if failed, err := loadHTTP(hc, 2, 50, nil); failed > 0 {
			return err
		}
		if n := at.to(victim) - before; n > 0 {
			return fmt.Errorf("the dead instance still got %d attempts", n)
		}
		return nil
	})
	before := at.to(victim)
	if failed, err := loadHTTP(hc, 4, 400, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	if n := at.to(victim) - before; n > 0 {
		t.Fatalf("the ejected instance got %d new attempts", n)
	}
}

func TestHTTPPostNotRetried(t *testing.T) {
	reg := newRegistry(t)
	b := startHTTP(t, "a")
	b.fail.Store(true)
	register(t, reg, b.instance(svc, nil))
	pol := policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})
	noEject := client.Config{Balancing: client.Balancing{Outlier: client.Outlier{Disabled: true}}}

	hc := newHTTP(t, noEject, client.WithWatcher(reg), client.WithPolicies(pol))
	for _, tc := range []struct {
		method string
		header http.Header
		want   int64
	}{
		{http.MethodPost, nil, 1},
		{http.MethodGet, nil, 3},
		{http.MethodPost, http.Header{"Idempotency-Key": {"k1"}}, 3},
	} {
		b.calls.Store(0)
		code, _, err := get(hc, tc.method, "http://orders/v1/orders", tc.header)
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d %v, want 503", tc.method, code, err)
		}
		if n := b.calls.Load(); n != tc.want {
			t.Errorf("%s %v was sent %d times, want %d", tc.method, tc.header, n, tc.want)
		}
	}

	hcAll := newHTTP(t, noEject, client.WithWatcher(reg), client.WithPolicies(pol), client.WithRetryNonIdempotent())
	b.calls.Store(0)
	if code, _, _ := get(hcAll, http.MethodPost, "http://orders/v1/orders", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("POST: %d", code)
	}
	if n := b.calls.Load(); n != 3 {
		t.Errorf("POST with WithRetryNonIdempotent was sent %d times, want 3", n)
	}
}

func TestHTTPRetryGoesElsewhere(t *testing.T) {
	reg := newRegistry(t)
	bad := startFleet(t, reg, startHTTP, 0, "good", "bad")[1]
	bad.fail.Store(true)
	hc := newHTTP(t, client.Config{Balancing: client.Balancing{Algorithm: client.RoundRobin, Outlier: client.Outlier{Disabled: true}}},
		client.WithWatcher(reg),
		client.WithPolicies(policies(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}})))
	for range 100 {
		code, body, err := get(hc, http.MethodGet, "http://orders/x", nil)
		if err != nil || code != http.StatusOK || body != "good" {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
	}
	if bad.calls.Load() == 0 {
		t.Fatal("the failing instance was never tried: the test proves nothing")
	}
}

func TestHTTPPinCanaryZone(t *testing.T) {
	reg := newRegistry(t)
	a := startHTTP(t, "a-zone1")
	b := startHTTP(t, "b-zone2")
	c := startHTTP(t, "canary-zone2")
	register(t, reg, a.instance(svc, map[string]string{discovery.MetaZone: "z1", discovery.MetaVersion: "v1"}))
	register(t, reg, b.instance(svc, map[string]string{discovery.MetaZone: "z2", discovery.MetaVersion: "v1"}))
	register(t, reg, c.instance(svc, map[string]string{discovery.MetaZone: "z2", discovery.MetaVersion: "canary"}))
	hc := newHTTP(t, client.Config{Balancing: client.Balancing{
		Zone:   "z1",
		Canary: &client.Canary{Weight: 0},
		Pin:    &client.Pin{},
	}}, client.WithWatcher(reg))
	vitamintest.Eventually(t, 5*time.Second, func() error {
		if n := len(reg.Instances(svc)); n != 3 {
			return fmt.Errorf("%d instances", n)
		}
		return nil
	})
	for range 50 {
		if _, body, err := get(hc, http.MethodGet, "http://orders/x", nil); err != nil || body != "a-zone1" {
			t.Fatalf("unpinned call in zone z1: %q %v, want a-zone1", body, err)
		}
		if _, body, err := get(hc, http.MethodGet, "http://orders/x", http.Header{"Vitamin-Pin": {"canary"}}); err != nil || body != "canary-zone2" {
			t.Fatalf("pinned call: %q %v, want canary-zone2", body, err)
		}
	}
	_, _, err := get(hc, http.MethodGet, "http://orders/x", http.Header{"Vitamin-Pin": {"v7"}})
	if !errors.Is(err, client.ErrNoInstances) || !strings.Contains(err.Error(), "version=v7") {
		t.Fatalf("pinned to a missing version: %v", err)
	}
}

func TestHTTPEmptySetAndRecovery(t *testing.T) {
	reg := newRegistry(t)
	a := startHTTP(t, "a")
	ra := register(t, reg, a.instance(svc, nil))
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg))
	if code, _, err := get(hc, http.MethodGet, "http://orders/x", nil); err != nil || code != 200 {
		t.Fatal(code, err)
	}
	if err := ra.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 5*time.Second, func() error {
		_, _, err := get(hc, http.MethodGet, "http://orders/x", nil)
		var ne *client.NoInstancesError
		if !errors.As(err, &ne) || ne.Service != svc {
			return fmt.Errorf("got %v, want a *NoInstancesError for %q", err, svc)
		}
		return nil
	})
	b := startHTTP(t, "b")
	register(t, reg, b.instance(svc, nil))
	eventuallyServedBy(t, hc, "b")
}

// eventuallyServedBy waits until a GET is answered by the backend id.
func eventuallyServedBy(t *testing.T, hc *http.Client, id string) {
	t.Helper()
	vitamintest.Eventually(t, 5*time.Second, func() error {
		_, body, err := get(hc, http.MethodGet, "http://orders/x", nil)
		if err != nil || body != id {
			return fmt.Errorf("got %q %v, want an answer from %s", body, err, id)
		}
		return nil
	})
}

// TestHTTPEmptySetUnderPolicy is TestGRPCEmptySetUnderPolicy over HTTP.
func TestHTTPEmptySetUnderPolicy(t *testing.T) {
	reg := newRegistry(t)
	pol := policies(t, emptySetPolicy)
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithPolicies(pol), client.WithoutTracing())
	for range 20 {
		_, _, err := get(hc, http.MethodGet, "http://orders/x", nil)
		if !errors.Is(err, client.ErrNoInstances) {
			t.Fatalf("got %v, want ErrNoInstances", err)
		}
	}
	checkEmptySetSnapshot(t, pol.For(svc, "").Snapshot())

	b := startHTTP(t, "b")
	register(t, reg, b.instance(svc, nil))
	eventuallyServedBy(t, hc, "b")
}

func TestHTTPTracePropagationAndPassThrough(t *testing.T) {
	reg := newRegistry(t)
	var got atomic.Value
	srv := startHTTP(t, "a")
	srv.http.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("traceparent"))
		fmt.Fprint(w, "a")
	})
	register(t, reg, srv.instance(svc, nil))
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithHTTPTracing(tracinghttp.WithPropagator(propagation.TraceContext{})))

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/x", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if tp, _ := got.Load().(string); !strings.Contains(tp, tid.String()) {
		t.Fatalf("traceparent %q does not carry trace %s", tp, tid)
	}

	// Other hosts go straight through.
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", srv.port), Path: "/direct"}
	if code, _, err := get(hc, http.MethodGet, u.String(), nil); err != nil || code != 200 {
		t.Fatalf("direct call: %d %v", code, err)
	}
}

func TestHTTPPinByBaggageAndClose(t *testing.T) {
	reg := newRegistry(t)
	v1, v2 := startHTTP(t, "v1"), startHTTP(t, "v2")
	register(t, reg, v1.instance(svc, map[string]string{discovery.MetaVersion: "v1"}))
	register(t, reg, v2.instance(svc, map[string]string{discovery.MetaVersion: "v2"}))
	hc, err := client.NewHTTP(svc, client.Config{Balancing: client.Balancing{Pin: &client.Pin{}}}, client.WithWatcher(reg))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := baggage.NewMember("vitamin.pin", "v2")
	bag, _ := baggage.New(m)
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/x", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "v2" {
			t.Fatalf("call with baggage vitamin.pin=v2 served by %s", body)
		}
	}
	if err := client.CloseHTTP(hc); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Get("http://orders/x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

func TestHTTPClosedWatcherFailsCalls(t *testing.T) {
	reg := newRegistry(t)
	_ = reg.Close()
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/x", nil)
	if _, err := hc.Do(req); !errors.Is(err, client.ErrNoInstances) {
		t.Fatalf("with a closed watcher: %v, want ErrNoInstances", err)
	}
}

func TestHTTPSlowInstance(t *testing.T) {
	reg := newRegistry(t)
	bs := startFleet(t, reg, startHTTP, 2*time.Millisecond, "a", "b", "slow")
	slow := bs[2]
	slow.delay.Store(int64(20 * time.Millisecond))
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing())
	if failed, err := loadHTTP(hc, 4, 800, nil); failed > 0 {
		t.Fatalf("%d calls failed: %v", failed, err)
	}
	share := float64(slow.calls.Load()) / 800
	// An even spread would give it a third; a loaded CI machine blurs the
	// tenfold difference, so the bound leaves room for that.
	if share > 0.15 {
		t.Fatalf("the slow instance got %.1f%% of the calls, want < 15%% (an even share is 33%%): %v", 100*share, counts(bs...))
	}
}

func TestEjectionIsLoggedAndCounted(t *testing.T) {
	reg := newRegistry(t)
	bad := startFleet(t, reg, startHTTP, 0, "good", "bad")[1]
	bad.fail.Store(true)
	var logs vitamintest.Buffer
	metrics := vitamintest.NewMetrics(t)
	hc := newHTTP(t, client.Config{Balancing: client.Balancing{Algorithm: client.RoundRobin, Outlier: client.Outlier{Consecutive: 2}}},
		client.WithWatcher(reg), client.WithoutTracing(),
		client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), client.WithMeterProvider(metrics.Provider))
	for range 10 {
		_, _, _ = get(hc, http.MethodGet, "http://orders/x", nil)
	}
	if !strings.Contains(logs.String(), "instance ejected") || !strings.Contains(logs.String(), "instance=bad") {
		t.Errorf("no ejection in the log:\n%s", logs.String())
	}
	ejections := metrics.Sum(t, client.MetricEjections)
	if ejections != 1 {
		t.Errorf("%s = %d, want 1", client.MetricEjections, ejections)
	}
}
