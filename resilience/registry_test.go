package resilience_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

func TestValidationNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		p     resilience.Policy
		field string
	}{
		{"negative timeout", resilience.Policy{Timeout: -1}, "timeout"},
		{"zero attempts", resilience.Policy{Retry: &resilience.Retry{}}, "retry.max_attempts"},
		{"negative backoff", resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2, Backoff: -time.Second}}, "retry.backoff"},
		{"max backoff below backoff", resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2, Backoff: time.Second, MaxBackoff: time.Millisecond}}, "retry.max_backoff"},
		{"multiplier below 1", resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2, Multiplier: 0.5}}, "retry.multiplier"},
		{"jitter above 1", resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2, Jitter: 1.5}}, "retry.jitter"},
		{"budget ratio above 1", resilience.Policy{Budget: &resilience.Budget{Ratio: 2}}, "budget.ratio"},
		{"budget ratio negative", resilience.Policy{Budget: &resilience.Budget{Ratio: -0.1}}, "budget.ratio"},
		{"negative min concurrency", resilience.Policy{Budget: &resilience.Budget{MinConcurrency: -1}}, "budget.min_concurrency"},
		{"breaker without window", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{FailureRate: 0.5, OpenFor: time.Second}}, "circuit_breaker.window_size"},
		{"breaker with both windows", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, Window: time.Second, FailureRate: 0.5, OpenFor: time.Second}}, "circuit_breaker.window"},
		{"failure rate above 1", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 1.1, OpenFor: time.Second}}, "circuit_breaker.failure_rate"},
		{"failure rate 0", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, OpenFor: time.Second}}, "circuit_breaker.failure_rate"},
		{"min requests above window", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, MinRequests: 11, FailureRate: 0.5, OpenFor: time.Second}}, "circuit_breaker.min_requests"},
		{"open for 0", resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5}}, "circuit_breaker.open_for"},
		{"bulkhead of 0", resilience.Policy{Bulkhead: &resilience.Bulkhead{}}, "bulkhead.max_concurrent"},
		{"negative bulkhead wait", resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1, MaxWait: -1}}, "bulkhead.max_wait"},
		{"rate 0", resilience.Policy{RateLimit: &resilience.RateLimit{}}, "rate_limit.rate"},
		{"negative burst", resilience.Policy{RateLimit: &resilience.RateLimit{Rate: 1, Burst: -1}}, "rate_limit.burst"},
		{"hedge without delay", resilience.Policy{Hedge: &resilience.Hedge{}}, "hedge.delay"},
		{"hedge quantile 1", resilience.Policy{Hedge: &resilience.Hedge{Quantile: 1}}, "hedge.quantile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			var fe *resilience.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, resilience.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Fatalf("field %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if _, err := resilience.NewExecutor("x", tt.p); !errors.Is(err, resilience.ErrInvalidConfig) {
				t.Fatalf("NewExecutor accepted an invalid policy: %v", err)
			}
		})
	}
	err := resilience.Config{Overrides: map[string]resilience.Policy{"orders": {Retry: &resilience.Retry{}}}}.Validate()
	var fe *resilience.FieldError
	if !errors.As(err, &fe) || fe.Field != "overrides[orders].retry.max_attempts" {
		t.Fatalf("Config.Validate() = %v, want the override's field named", err)
	}
	if want := "resilience: invalid configuration: overrides[orders].retry.max_attempts = 0: must be at least 1"; err.Error() != want {
		t.Fatalf("Config.Validate() = %q, want %q", err, want)
	}
	if _, err := resilience.NewCallerLimiter(resilience.CallerLimits{MaxConcurrent: -1}); !errors.As(err, &fe) ||
		fe.Field != "caller_limits.max_concurrent" || !errors.Is(err, resilience.ErrInvalidConfig) {
		t.Fatalf("NewCallerLimiter = %v, want a *FieldError for caller_limits.max_concurrent", err)
	}
	if err := (resilience.Policy{}).Validate(); err != nil {
		t.Fatalf("zero policy: %v", err)
	}
}

func breakerSpec(openFor time.Duration) *resilience.CircuitBreaker {
	return &resilience.CircuitBreaker{WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: openFor}
}

func TestRegistryResolvesOverrides(t *testing.T) {
	r, err := resilience.NewRegistry(resilience.Config{
		Default: resilience.Policy{Timeout: time.Second},
		Overrides: map[string]resilience.Policy{
			"orders":     {Timeout: 2 * time.Second},
			"orders/Get": {Timeout: 3 * time.Second},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		service, method, name string
		timeout               time.Duration
	}{
		{"orders", "Get", "orders/Get", 3 * time.Second},
		{"orders", "Put", "orders", 2 * time.Second},
		{"orders", "", "orders", 2 * time.Second},
		{"payments", "Get", "payments", time.Second},
		{"users", "", "users", time.Second},
	} {
		e := r.For(tt.service, tt.method)
		if e.Name() != tt.name || e.Policy().Timeout != tt.timeout {
			t.Errorf("For(%q, %q) = %s with timeout %v; want %s with %v", tt.service, tt.method, e.Name(), e.Policy().Timeout, tt.name, tt.timeout)
		}
	}
	if r.For("payments", "A") != r.For("payments", "B") {
		t.Error("methods of a service without overrides must share the service's executor (and breaker)")
	}
	if r.For("payments", "") == r.For("users", "") {
		t.Error("two services must not share a breaker")
	}
	if got := len(r.Snapshot()); got != 4 {
		t.Errorf("%d snapshots, want 4", got)
	}
}

func TestRegistryLiveSwap(t *testing.T) {
	ctx := context.Background()
	cfg := resilience.Config{Default: resilience.Policy{
		CircuitBreaker: breakerSpec(time.Hour),
		Bulkhead:       &resilience.Bulkhead{MaxConcurrent: 1},
	}}
	r, err := resilience.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// An in-flight call holds the only bulkhead slot of "payments".
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- r.For("payments", "").Run(ctx, func(context.Context) error { close(started); <-release; return nil })
	}()
	<-started
	if err := r.For("payments", "").Run(ctx, succeed); !errors.Is(err, resilience.ErrRejected) {
		t.Fatalf("second call: %v, want ErrRejected from the full bulkhead", err)
	}
	// Open the breaker of "orders".
	for range 2 {
		_ = r.For("orders", "").Run(ctx, fail)
	}

	// Change the bulkhead only: new calls get the new bulkhead, the breaker keeps its state.
	cfg.Default.Bulkhead = &resilience.Bulkhead{MaxConcurrent: 2}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.For("payments", "").Run(ctx, succeed); err != nil {
		t.Fatalf("new call after the bulkhead grew: %v", err)
	}
	if err := r.For("orders", "").Run(ctx, succeed); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("orders after an unrelated change: %v, want the breaker still open", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight call: %v, want it to finish normally", err)
	}

	// An invalid update is refused and changes nothing.
	bad := cfg
	bad.Default.Retry = &resilience.Retry{MaxAttempts: 0}
	if err := r.Update(bad); !errors.Is(err, resilience.ErrInvalidConfig) {
		t.Fatalf("invalid update: %v", err)
	}
	if r.Config().Default.Retry != nil {
		t.Fatal("invalid update was applied")
	}

	// Change the breaker itself: it starts closed.
	cfg.Default.CircuitBreaker = breakerSpec(2 * time.Hour)
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.For("orders", "").Run(ctx, succeed); err != nil {
		t.Fatalf("orders after its breaker spec changed: %v, want a fresh closed breaker", err)
	}
	if s := r.For("orders", "").Snapshot(); s.Calls != 4 || s.Rejected != 1 {
		t.Fatalf("snapshot %+v: counters must survive swaps", s)
	}

	// An override for a method, then its removal.
	cfg.Overrides = map[string]resilience.Policy{"orders/Get": {Timeout: time.Second}}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.For("orders", "Get").Name(); got != "orders/Get" {
		t.Fatalf("override not applied: %s", got)
	}
	cfg.Overrides = nil
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.For("orders", "Get").Name(); got != "orders" {
		t.Fatalf("removed override still applied: %s", got)
	}
}

func TestRegistryConcurrentSwapsAndCalls(t *testing.T) {
	cfg := resilience.Config{Default: resilience.Policy{
		Retry:          &resilience.Retry{MaxAttempts: 2},
		Budget:         &resilience.Budget{},
		CircuitBreaker: breakerSpec(time.Millisecond),
		Bulkhead:       &resilience.Bulkhead{MaxConcurrent: 4, MaxWait: time.Second},
	}}
	r, err := resilience.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			services := []string{"a", "b", "c"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				fn := succeed
				if i%3 == 0 {
					fn = fail
				}
				_ = r.For(services[(g+i)%3], "m").Run(context.Background(), fn)
				_ = r.Snapshot()
			}
		})
	}
	for i := range 200 {
		cfg.Default.Bulkhead = &resilience.Bulkhead{MaxConcurrent: 1 + i%5, MaxWait: time.Second}
		if err := r.Update(cfg); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	for _, s := range r.Snapshot() {
		if s.Calls == 0 {
			t.Errorf("%s: no calls recorded", s.Policy)
		}
	}
}

func TestRegistryMatchesOverrideKeysInCanonicalForm(t *testing.T) {
	ctx := context.Background()
	method := resilience.Policy{Timeout: 2 * time.Second, CircuitBreaker: breakerSpec(time.Hour)}
	cfg := resilience.Config{
		Default: resilience.Policy{Timeout: time.Second},
		Overrides: map[string]resilience.Policy{
			"orders_pkg_Orders_Get": method,                     // as a file or Consul KV spells it
			"PAYMENTS":              {Timeout: 3 * time.Second}, // any case
			"order_service":         {Timeout: 4 * time.Second}, // as the environment spells "order-service"
		},
	}
	r, err := resilience.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		service, method, name string
		timeout               time.Duration
	}{
		{"orders", "pkg.Orders/Get", "orders/pkg.Orders/Get", 2 * time.Second},
		{"orders", "pkg.Orders/Put", "orders", time.Second},
		{"payments", "Charge", "payments", 3 * time.Second},
		{"order-service", "", "order-service", 4 * time.Second},
	} {
		e := r.For(tt.service, tt.method)
		if e.Name() != tt.name || e.Policy().Timeout != tt.timeout {
			t.Errorf("For(%q, %q) = %s with timeout %v; want %s with %v", tt.service, tt.method, e.Name(), e.Policy().Timeout, tt.name, tt.timeout)
		}
	}

	// The method's breaker opens, then the same policy is spelled the Go
	// way and the default changes: the breaker keeps its state.
	for range 2 {
		_ = r.For("orders", "pkg.Orders/Get").Run(ctx, fail)
	}
	cfg.Default.Timeout = 5 * time.Second
	cfg.Overrides = map[string]resilience.Policy{"orders/pkg.Orders/Get": method}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.For("orders", "pkg.Orders/Get").Run(ctx, succeed); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Errorf("after respelling the key: %v, want the breaker still open", err)
	}
	if got := r.For("payments", "Charge").Policy().Timeout; got != 5*time.Second {
		t.Errorf("payments after its override was removed: timeout %v, want the default 5s", got)
	}

	// Two spellings of one target are refused, naming both.
	cfg.Overrides["orders_pkg_orders_get"] = resilience.Policy{}
	err = r.Update(cfg)
	var fe *resilience.FieldError
	if !errors.As(err, &fe) || fe.Field != "overrides" ||
		!strings.Contains(err.Error(), `"orders/pkg.Orders/Get"`) || !strings.Contains(err.Error(), `"orders_pkg_orders_get"`) {
		t.Errorf("Update with two spellings of one target = %v, want a FieldError naming both", err)
	}
}

// TestRegistryForDoesNotAllocateAfterUpdate: the hot path stays free of
// allocations once a target has been looked up again after a change.
func TestRegistryForDoesNotAllocateAfterUpdate(t *testing.T) {
	cfg := resilience.Config{Overrides: map[string]resilience.Policy{"orders_pkg_Orders_Get": {Timeout: time.Second}}}
	r, err := resilience.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.For("orders", "pkg.Orders/Get")
	cfg.Overrides["orders_pkg_Orders_Get"] = resilience.Policy{Timeout: 2 * time.Second}
	if err := r.Update(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.For("orders", "pkg.Orders/Get").Policy().Timeout; got != 2*time.Second {
		t.Fatalf("timeout %v after the update, want 2s", got)
	}
	if n := testing.AllocsPerRun(100, func() { r.For("orders", "pkg.Orders/Get") }); n != 0 {
		t.Errorf("For allocates %v times per call after an update, want 0", n)
	}
}

// BenchmarkRegistryForAfterUpdate measures the lookup of a method
// override, as a Registry following configuration serves it after a
// change.
func BenchmarkRegistryForAfterUpdate(b *testing.B) {
	cfg := resilience.Config{Overrides: map[string]resilience.Policy{"orders_pkg_Orders_Get": {Timeout: time.Second}}}
	r, err := resilience.NewRegistry(cfg)
	if err != nil {
		b.Fatal(err)
	}
	r.For("orders", "pkg.Orders/Get")
	cfg.Overrides["orders_pkg_Orders_Get"] = resilience.Policy{Timeout: 2 * time.Second}
	if err := r.Update(cfg); err != nil {
		b.Fatal(err)
	}
	r.For("orders", "pkg.Orders/Get")
	b.ReportAllocs()
	for b.Loop() {
		if r.For("orders", "pkg.Orders/Get") == nil {
			b.Fatal("nil executor")
		}
	}
}
