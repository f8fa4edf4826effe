package resilience_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

func newClient(t *testing.T, e *resilience.Executor) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: resilience.NewRoundTripper(tr, func(*http.Request) *resilience.Executor { return e })}
}

func TestRoundTripperRetriesAndReplaysTheBody(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("got " + string(body)))
	}))
	defer srv.Close()
	c := newClient(t, mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}}))

	resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got order-1" || calls.Load() != 3 {
		t.Fatalf("status %d body %q after %d calls; want 200, the replayed body, 3 calls", resp.StatusCode, body, calls.Load())
	}
}

func TestRoundTripperReturnsTheLastFailedResponse(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newClient(t, mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}}))
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "maintenance") || calls.Load() != 2 {
		t.Fatalf("status %d body %q after %d calls", resp.StatusCode, body, calls.Load())
	}
}

func TestRoundTripperBreakerAndTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	c := newClient(t, mustExecutor(t, resilience.Policy{
		Timeout:        20 * time.Millisecond,
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 3, FailureRate: 1, MinRequests: 3, OpenFor: time.Hour},
	}))
	_, err := c.Get(srv.URL + "/slow")
	if !errors.Is(err, resilience.ErrTimeout) {
		t.Fatalf("slow request: %v, want ErrTimeout", err)
	}
	for range 2 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	_, err = c.Get(srv.URL)
	if !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("after 3 failures: %v, want ErrCircuitOpen", err)
	}
}

func TestRoundTripperBodyOutlivesTheAttempt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
	}))
	defer srv.Close()
	c := newClient(t, mustExecutor(t, resilience.Policy{Timeout: time.Minute, Retry: &resilience.Retry{MaxAttempts: 2}}))
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 1<<20 {
		t.Fatalf("read %d bytes, %v; want the whole body", n, err)
	}
}

func TestMiddlewareShedsLoad(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1}})
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(resilience.Middleware(e, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			close(entered)
			<-release
		}
	})))
	defer srv.Close()
	done := make(chan error)
	go func() {
		resp, err := http.Get(srv.URL + "/block")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	e = mustExecutor(t, resilience.Policy{RateLimit: &resilience.RateLimit{Rate: 0.01}})
	srv2 := httptest.NewServer(resilience.Middleware(e, nil)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv2.Close()
	var statuses []int
	for range 2 {
		resp, err := http.Get(srv2.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == 429 && resilience.RetryAfter(resp.Header) < time.Second {
			t.Fatalf("429 without a usable Retry-After: %q", resp.Header.Get("Retry-After"))
		}
	}
	if statuses[0] != 200 || statuses[1] != 429 {
		t.Fatalf("statuses %v, want [200 429]", statuses)
	}
}

func TestMiddlewarePerCallerLimit(t *testing.T) {
	callers, err := resilience.NewCallerLimiter(resilience.CallerLimits{Rate: 0.01, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	var served sync.Map
	srv := httptest.NewServer(resilience.Middleware(nil, callers)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := served.LoadOrStore(r.Header.Get(resilience.CallerHeader), new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
	})))
	defer srv.Close()
	get := func(caller string) int {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL, nil)
		req.Header.Set(resilience.CallerHeader, caller)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rejected := 0
	for range 20 {
		if get("noisy") == http.StatusTooManyRequests {
			rejected++
		}
	}
	if rejected != 17 {
		t.Fatalf("noisy caller: %d of 20 rejected, want 17 (burst 3)", rejected)
	}
	for range 3 {
		if code := get("quiet"); code != 200 {
			t.Fatalf("quiet caller got %d while the noisy one was limited", code)
		}
	}
	if callers.Rejected() != 17 {
		t.Fatalf("Rejected() = %d", callers.Rejected())
	}
}
