package resilience_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

// limitedHTTP is a real HTTP server on loopback behind Middleware, whose
// handler blocks on /block until released, fails on /fail, and answers
// 200 elsewhere (including the health paths).
type limitedHTTP struct {
	url     string
	client  *http.Client
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func startLimitedHTTP(t *testing.T, e *resilience.Executor, callers *resilience.CallerLimiter, opts ...resilience.MiddlewareOption) *limitedHTTP {
	t.Helper()
	s := &limitedHTTP{entered: make(chan struct{}, 16), release: make(chan struct{})}
	srv := httptest.NewServer(resilience.Middleware(e, callers, opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/block":
			s.entered <- struct{}{}
			select {
			case <-s.release:
			case <-r.Context().Done():
			}
		case "/fail":
			w.WriteHeader(http.StatusInternalServerError)
		}
	})))
	tr := &http.Transport{}
	s.url, s.client = srv.URL, &http.Client{Transport: tr}
	t.Cleanup(func() {
		s.unblock()
		srv.Close()
		tr.CloseIdleConnections()
	})
	return s
}

func (s *limitedHTTP) unblock() { s.once.Do(func() { close(s.release) }) }

// get returns the status and Retry-After header of GET path.
func (s *limitedHTTP) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.url+path, nil)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// block starts n requests to /block and waits until all are in the handler.
func (s *limitedHTTP) block(t *testing.T, n int) <-chan int {
	t.Helper()
	done := make(chan int, n)
	for range n {
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.url+"/block", nil)
			resp, err := s.client.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for range n {
		select {
		case <-s.entered:
		case code := <-done:
			t.Fatalf("a blocking request ended with %d before it reached the handler", code)
		case <-time.After(30 * time.Second):
			t.Fatal("blocking requests did not reach the handler")
		}
	}
	return done
}

// With each kind of limit full, the health paths answer 200, and every
// refused request carries Retry-After.
func TestMiddlewareHealthChecksPassFullLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policy     resilience.Policy
		callers    *resilience.CallerLimits
		blocking   int    // requests that block in the handler to fill the limit
		spend      string // a path requested once first, to spend a rate limit or open the circuit
		want       int
		retryAfter int // 0: any positive value
	}{
		{name: "bulkhead", policy: resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 2}}, blocking: 2,
			want: http.StatusServiceUnavailable, retryAfter: 1},
		{name: "rate limit", policy: resilience.Policy{RateLimit: &resilience.RateLimit{Rate: 0.001}}, spend: "/",
			want: http.StatusTooManyRequests, retryAfter: 1000},
		{name: "caller concurrency", callers: &resilience.CallerLimits{MaxConcurrent: 1}, blocking: 1,
			want: http.StatusTooManyRequests, retryAfter: 1},
		{name: "caller rate", callers: &resilience.CallerLimits{Rate: 0.001}, spend: "/",
			want: http.StatusTooManyRequests, retryAfter: 1000},
		{name: "circuit open", policy: resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 1, FailureRate: 1, OpenFor: time.Hour}}, spend: "/fail",
			want: http.StatusServiceUnavailable, retryAfter: 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *resilience.Executor
			if tc.policy != (resilience.Policy{}) {
				e = mustExecutor(t, tc.policy)
			}
			var callers *resilience.CallerLimiter
			if tc.callers != nil {
				var err error
				if callers, err = resilience.NewCallerLimiter(*tc.callers); err != nil {
					t.Fatal(err)
				}
			}
			s := startLimitedHTTP(t, e, callers)
			healthy := func() {
				t.Helper()
				for _, path := range resilience.DefaultHealthPaths() {
					for range 3 {
						if code, _ := s.get(t, path); code != http.StatusOK {
							t.Fatalf("GET %s: %d, want 200", path, code)
						}
					}
				}
			}
			// Health checks before the limit is full take nothing from it.
			healthy()
			if tc.spend != "" {
				s.get(t, tc.spend)
			}
			blocked := s.block(t, tc.blocking)

			code, retryAfter := s.get(t, "/orders")
			if code != tc.want {
				t.Fatalf("GET /orders with the limit full: %d, want %d", code, tc.want)
			}
			secs, err := strconv.Atoi(retryAfter)
			if err != nil || secs <= 0 || secs > tc.retryAfter {
				t.Fatalf("Retry-After %q, want %d", retryAfter, tc.retryAfter)
			}
			if tc.name != "circuit open" && secs != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %d", retryAfter, tc.retryAfter)
			}
			healthy()
			if e != nil && e.Snapshot().Rejected != 1 {
				t.Fatalf("executor counted %d rejections, want 1 (health checks are not counted)", e.Snapshot().Rejected)
			}
			if callers != nil && callers.Rejected() != 1 {
				t.Fatalf("caller limiter counted %d rejections, want 1", callers.Rejected())
			}
			s.unblock()
			for range tc.blocking {
				if code := <-blocked; code != http.StatusOK {
					t.Fatalf("a blocked request ended with %d", code)
				}
			}
		})
	}
}

// WithHealthPaths replaces the default list: its paths pass, the default
// ones are limited like any other.
func TestMiddlewareWithHealthPaths(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1}})
	s := startLimitedHTTP(t, e, nil, resilience.WithHealthPaths("/status", "/ping"))
	blocked := s.block(t, 1)
	for path, want := range map[string]int{
		"/status":  http.StatusOK,
		"/ping":    http.StatusOK,
		"/health":  http.StatusServiceUnavailable,
		"/status/": http.StatusServiceUnavailable, // exact paths only
	} {
		if code, _ := s.get(t, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	s.unblock()
	<-blocked

	// No paths: every request is limited.
	e = mustExecutor(t, resilience.Policy{RateLimit: &resilience.RateLimit{Rate: 0.001}})
	s = startLimitedHTTP(t, e, nil, resilience.WithHealthPaths())
	if code, _ := s.get(t, "/health"); code != http.StatusOK {
		t.Fatalf("first GET /health: %d", code)
	}
	if code, _ := s.get(t, "/health"); code != http.StatusTooManyRequests {
		t.Fatalf("second GET /health with no health paths: %d, want 429", code)
	}
}

func TestPushback(t *testing.T) {
	for _, tc := range []struct {
		err        error
		wait       time.Duration
		ok         bool
		status     int
		retryAfter int
	}{
		{&resilience.Error{Reason: resilience.ReasonBulkhead}, resilience.BusyRetryAfter, true, 503, 1},
		{&resilience.Error{Reason: resilience.ReasonLimit}, resilience.BusyRetryAfter, true, 503, 1},
		{&resilience.Error{Reason: resilience.ReasonCallerLimit, RetryAfter: 2500 * time.Millisecond}, 2500 * time.Millisecond, true, 429, 3},
		{&resilience.Error{Reason: resilience.ReasonRateLimit, RetryAfter: time.Millisecond}, time.Millisecond, true, 429, 1},
		{&resilience.Error{Reason: resilience.ReasonCircuitOpen, RetryAfter: 4 * time.Second}, 4 * time.Second, true, 503, 4},
		{&resilience.Error{Reason: resilience.ReasonCircuitOpen}, resilience.BusyRetryAfter, true, 503, 1},
		{&resilience.Error{Reason: resilience.ReasonTimeout}, 0, false, 504, 0},
		{&resilience.Error{Reason: resilience.ReasonBudget}, 0, false, 0, 0},
		{errors.New("plain"), 0, false, 0, 0},
	} {
		wait, ok := resilience.Pushback(tc.err)
		if wait != tc.wait || ok != tc.ok {
			t.Errorf("Pushback(%v) = %v, %v; want %v, %v", tc.err, wait, ok, tc.wait, tc.ok)
		}
		status, secs, _ := resilience.ShedStatus(tc.err)
		if status != tc.status || secs != tc.retryAfter {
			t.Errorf("ShedStatus(%v) = %d, %d; want %d, %d", tc.err, status, secs, tc.status, tc.retryAfter)
		}
	}
}

// BenchmarkMiddleware is the success path of the server middleware with a
// bulkhead and a rate limit: "health-paths" with the default health list
// (each request's path is compared with it), "no-health-paths" without one
// (the cost before health checks were exempt).
func BenchmarkMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []resilience.MiddlewareOption
	}{
		{"health-paths", nil},
		{"no-health-paths", []resilience.MiddlewareOption{resilience.WithHealthPaths()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, err := resilience.NewExecutor("server", resilience.Policy{
				Bulkhead:  &resilience.Bulkhead{MaxConcurrent: 100},
				RateLimit: &resilience.RateLimit{Rate: 1e9, Burst: 1e6},
			})
			if err != nil {
				b.Fatal(err)
			}
			h := resilience.Middleware(e, nil, bc.opts...)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}
