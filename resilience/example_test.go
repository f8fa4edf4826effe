package resilience_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

// A policy is plain data; building an executor validates it.
func ExamplePolicy() {
	var p resilience.Policy
	_ = json.Unmarshal([]byte(`{
		"timeout": 250000000,
		"retry": {"max_attempts": 3, "backoff": 1000000, "jitter": 0.2},
		"budget": {"ratio": 0.2},
		"circuit_breaker": {"window_size": 20, "failure_rate": 0.5, "min_requests": 10, "open_for": 5000000000}
	}`), &p)
	e, err := resilience.NewExecutor("inventory", p)
	if err != nil {
		fmt.Println(err)
		return
	}
	attempts := 0
	err = e.Run(context.Background(), func(ctx context.Context) error {
		attempts++
		if attempts < 2 {
			return errors.New("connection reset")
		}
		return nil
	})
	fmt.Println("err:", err, "attempts:", attempts)

	p.Retry.MaxAttempts = 0
	_, err = resilience.NewExecutor("inventory", p)
	fmt.Println(err)
	// Output:
	// err: <nil> attempts: 2
	// resilience: invalid configuration: retry.max_attempts = 0: must be at least 1
}

// A fallback receives the cause and can tell an open circuit, a rejection,
// a timeout and a plain failure apart.
func ExampleExecutor_RunWithFallback() {
	e, _ := resilience.NewExecutor("recommendations", resilience.Policy{
		Timeout:        10 * time.Millisecond,
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: time.Minute},
	})
	fallback := func(_ context.Context, cause error) error {
		switch {
		case errors.Is(cause, resilience.ErrCircuitOpen):
			fmt.Println("fallback: circuit open, serving cached recommendations")
		case errors.Is(cause, resilience.ErrRejected):
			fmt.Println("fallback: shed, serving cached recommendations")
		case errors.Is(cause, resilience.ErrTimeout):
			fmt.Println("fallback: too slow, serving defaults")
		default:
			fmt.Println("fallback: failed:", cause)
		}
		return nil
	}
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	broken := func(context.Context) error { return errors.New("HTTP 500") }
	ctx := context.Background()
	_ = e.RunWithFallback(ctx, slow, fallback)
	_ = e.RunWithFallback(ctx, broken, fallback)
	_ = e.RunWithFallback(ctx, broken, fallback)
	// Output:
	// fallback: too slow, serving defaults
	// fallback: failed: HTTP 500
	// fallback: circuit open, serving cached recommendations
}

// A registry holds named policies: a default per service and overrides,
// swapped atomically when the configuration changes.
func ExampleRegistry() {
	r, _ := resilience.NewRegistry(resilience.Config{
		Default: resilience.Policy{Timeout: time.Second, Retry: &resilience.Retry{MaxAttempts: 2}},
		Overrides: map[string]resilience.Policy{
			"payments":        {Timeout: 3 * time.Second},
			"payments/Refund": {Timeout: 10 * time.Second},
		},
	})
	for _, t := range []resilience.Target{{"orders", "Get"}, {"payments", "Charge"}, {"payments", "Refund"}} {
		e := r.For(t.Service, t.Method)
		fmt.Println(t.Service, t.Method, "->", e.Name(), e.Policy().Timeout)
	}
	_ = r.Update(resilience.Config{Default: resilience.Policy{Timeout: 2 * time.Second}})
	fmt.Println("after update:", r.For("payments", "Refund").Policy().Timeout)
	// Output:
	// orders Get -> orders 1s
	// payments Charge -> payments 3s
	// payments Refund -> payments/Refund 10s
	// after update: 2s
}

// A server sheds load per caller: one noisy consumer is answered 429 while
// the others are served.
func ExampleMiddleware() {
	callers, _ := resilience.NewCallerLimiter(resilience.CallerLimits{Rate: 0.01, Burst: 1})
	srv := httptest.NewServer(resilience.Middleware(nil, callers)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	for _, caller := range []string{"cart", "cart", "search"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set(resilience.CallerHeader, caller)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%s %d Retry-After=%q\n", caller, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Output:
	// cart 200 Retry-After=""
	// cart 429 Retry-After="100"
	// search 200 Retry-After=""
}

// Health checks pass a server's limits untouched, so an instance that is
// shedding load still reports itself alive; WithHealthPaths names other
// paths. Every shed answer carries Retry-After.
func ExampleWithHealthPaths() {
	limits, _ := resilience.NewExecutor("orders-server", resilience.Policy{
		RateLimit: &resilience.RateLimit{Rate: 0.01}, // one request, then one per 100 s
	})
	mw := resilience.Middleware(limits, nil, resilience.WithHealthPaths(append(resilience.DefaultHealthPaths(), "/status")...))
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	for _, path := range []string{"/orders", "/orders", "/health", "/status"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%s %d Retry-After=%q\n", path, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Output:
	// /orders 200 Retry-After=""
	// /orders 429 Retry-After="100"
	// /health 200 Retry-After=""
	// /status 200 Retry-After=""
}
