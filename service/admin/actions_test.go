package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
)

// Actions need the credential and a same-origin (or non-browser) request;
// refused ones change nothing. Nothing that changes state is a GET.
func TestActionsRefusedWithoutCredential(t *testing.T) {
	policies, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, OpenFor: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	policies.For("payments", "")
	newServer := func(token string) http.Handler {
		srv, err := admin.New(admin.Config{Token: token}, admin.WithPolicies(policies))
		if err != nil {
			t.Fatal(err)
		}
		return srv.Handler()
	}
	withToken, withoutToken := newServer("tok"), newServer("")
	state := func() string { return policies.Breakers()[0].State }

	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		path   string
		header map[string]string
		form   string
		status int
		want   string // the breaker's state afterwards
	}{
		{"no credential", withToken, "POST", "/api/v1/breakers/payments/open", nil, "", 401, "closed"},
		{"empty form credential", withToken, "POST", "/api/v1/breakers/payments/open", nil, "credential=", 401, "closed"},
		{"wrong bearer", withToken, "POST", "/api/v1/breakers/payments/open", map[string]string{"Authorization": "Bearer nope"}, "", 403, "closed"},
		{"wrong form credential", withToken, "POST", "/api/v1/breakers/payments/open", nil, "credential=nope", 403, "closed"},
		{"no token configured", withoutToken, "POST", "/api/v1/breakers/payments/open", map[string]string{"Authorization": "Bearer tok"}, "", 403, "closed"},
		{"cross-origin form", withToken, "POST", "/api/v1/breakers/payments/open", map[string]string{"Sec-Fetch-Site": "cross-site"}, "credential=tok", 403, "closed"},
		{"cross-origin origin", withToken, "POST", "/api/v1/breakers/payments/open", map[string]string{"Origin": "http://evil.example"}, "credential=tok", 403, "closed"},
		{"GET does not act", withToken, "GET", "/api/v1/breakers/payments/open?credential=tok", map[string]string{"Authorization": "Bearer tok"}, "", 405, "closed"},
		{"unknown breaker", withToken, "POST", "/api/v1/breakers/nothing/open", map[string]string{"Authorization": "Bearer tok"}, "", 404, "closed"},
		{"unknown action", withToken, "POST", "/api/v1/breakers/payments/explode", map[string]string{"Authorization": "Bearer tok"}, "", 404, "closed"},
		{"open with bearer", withToken, "POST", "/api/v1/breakers/payments/open", map[string]string{"Authorization": "Bearer tok"}, "", 200, "open"},
		{"close with form", withToken, "POST", "/api/v1/breakers/payments/close", map[string]string{"Sec-Fetch-Site": "same-origin"}, "credential=tok", 200, "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.form))
			if tc.form != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if tc.method == "POST" && tc.status != 405 {
				var res admin.ActionResult
				if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Status != tc.status || res.Message == "" {
					t.Errorf("answer %q: want an ActionResult with status and message (%v)", w.Body, err)
				}
			}
			if got := state(); got != tc.want {
				t.Errorf("breaker %s afterwards, want %s", got, tc.want)
			}
		})
	}
}

// The callers seen by the limiter, with their rate between two looks, and
// the health endpoints.
func TestCallersAndHealth(t *testing.T) {
	limiter, err := resilience.NewCallerLimiter(resilience.CallerLimits{Rate: 1000, Burst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ready, why := false, "starting"
	srv, err := admin.New(admin.Config{}, admin.WithCallers(limiter), admin.WithHealth(func() (bool, string) { return ready, why }))
	if err != nil {
		t.Fatal(err)
	}
	acquire := func(caller string, n int) {
		for range n {
			p, err := limiter.Acquire(t.Context(), caller)
			if err != nil {
				t.Fatal(err)
			}
			p.Release()
		}
	}
	acquire("checkout", 3)
	first := srv.State().Callers
	acquire("checkout", 5)
	acquire("", 1)
	second := srv.State().Callers
	if first == nil || second == nil || second.Limits.Rate != 1000 {
		t.Fatalf("callers %+v: want the limiter's", second)
	}
	if len(second.Callers) != 2 || second.Callers[0].Caller != "" || second.Callers[1].Caller != "checkout" ||
		second.Callers[1].Calls != 8 || second.Callers[1].Rate <= 0 {
		t.Errorf("callers %+v: want (none) and checkout with 8 calls and a rate", second.Callers)
	}
	for _, tc := range []struct {
		ready  bool
		path   string
		status int
	}{{false, "/livez", 200}, {false, "/readyz", 503}, {false, "/health", 503}, {true, "/readyz", 200}} {
		ready = tc.ready
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest("GET", tc.path, nil))
		if w.Code != tc.status {
			t.Errorf("ready=%v GET %s: %d, want %d", tc.ready, tc.path, w.Code, tc.status)
		}
	}
}
