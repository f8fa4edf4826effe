package config_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// goodPolicies are the keys of a valid resilience.Config, as Consul KV or
// the environment hold them.
var goodPolicies = map[string]any{
	"resilience.default.retry.max_attempts":           "3",
	"resilience.default.circuit_breaker.window_size":  "10",
	"resilience.default.circuit_breaker.failure_rate": "0.5",
	"resilience.default.circuit_breaker.open_for":     "1s",
}

func with(base map[string]any, change map[string]any) map[string]any {
	m := maps.Clone(base)
	maps.Copy(m, change)
	return m
}

func TestFollowAppliesEachChangeWholeOrNotAtAll(t *testing.T) {
	metrics := vitamintest.NewMetrics(t)
	var logs vitamintest.Buffer
	mem := config.NewMemorySource(goodPolicies)
	reported := make(chan error, 10)
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{mem}},
		config.WithMeterProvider(metrics.Provider),
		config.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		config.WithErrorHandler(func(err error) { reported <- err }))
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	registry, err := resilience.NewRegistry(resilience.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "resilience", registry.Update); err != nil {
		t.Fatal(err)
	}
	want := resilience.Config{Default: resilience.Policy{
		Retry:          &resilience.Retry{MaxAttempts: 3},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, OpenFor: time.Second},
	}}
	if diff := cmp.Diff(want, registry.Config()); diff != "" {
		t.Fatalf("registry after Follow (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name   string
		change map[string]any
		key    string // the key the rejection names
		is     error
	}{
		{"malformed value", map[string]any{"resilience.default.retry.max_attempts": "three"},
			"resilience.default.retry.max_attempts", config.ErrInvalidValue},
		{"out of range", map[string]any{"resilience.default.circuit_breaker.failure_rate": "1.5"},
			"resilience", resilience.ErrInvalidConfig},
		{"unknown key", map[string]any{"resilience.default.retry.max_atempts": "5"},
			"resilience.default.retry.max_atempts", config.ErrUnknownKey},
		{"wrong type", map[string]any{"resilience.default.bulkhead.max_concurrent": true},
			"resilience.default.bulkhead.max_concurrent", config.ErrInvalidValue},
		{"valid key by key, invalid as a whole", map[string]any{"resilience.default.circuit_breaker.min_requests": "20"},
			"resilience", resilience.ErrInvalidConfig},
		{"three keys, the third bad", map[string]any{
			"resilience.default.retry.max_attempts":           "5",
			"resilience.default.circuit_breaker.failure_rate": "0.9",
			"resilience.default.circuit_breaker.open_for":     "soon",
		}, "resilience.default.circuit_breaker.open_for", config.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			mem.Replace(with(goodPolicies, tc.change))
			var err error
			select {
			case err = <-reported:
			case <-time.After(wait):
				t.Fatal("no rejection reported")
			}
			var re *config.RejectedError
			if !errors.As(err, &re) || re.Key != "resilience" || !errors.Is(err, tc.is) {
				t.Fatalf("reported %v; want a *RejectedError for resilience matching %v", err, tc.is)
			}
			if diff := cmp.Diff(want, registry.Config()); diff != "" {
				t.Errorf("registry after a rejected change (-want the last good +got):\n%s", diff)
			}
			rs := cfg.Rejections()
			if len(rs) != 1 || rs[0].Prefix != "resilience" || rs[0].Key != tc.key || rs[0].Time.Before(before) ||
				rs[0].Reason != re.Err.Error() || rs[0].Err != err {
				t.Errorf("Rejections() = %+v; want one for resilience naming %s", rs, tc.key)
			}
			if !strings.Contains(logs.String(), "key="+tc.key+" ") {
				t.Errorf("log does not name the key %s:\n%s", tc.key, logs.String())
			}
		})
	}
	if n := metrics.Sum(t, "vitamin.config.rejections", attribute.String("key", "resilience")); n != 6 {
		t.Errorf("vitamin.config.rejections = %d, want 6", n)
	}

	// Back to the last good keys: nothing to apply, the rejection is cleared.
	mem.Replace(goodPolicies)
	vitamintest.Eventually(t, wait, func() error {
		if rs := cfg.Rejections(); len(rs) != 0 {
			return fmt.Errorf("rejections %+v", rs)
		}
		return nil
	})
	// A good change is applied.
	mem.Replace(with(goodPolicies, map[string]any{"resilience.default.retry.max_attempts": "4"}))
	vitamintest.Eventually(t, wait, func() error {
		if n := registry.Config().Default.Retry.MaxAttempts; n != 4 {
			return fmt.Errorf("max attempts %d, want 4", n)
		}
		return nil
	})
	select {
	case err := <-reported:
		t.Errorf("unexpected report: %v", err)
	default:
	}
}

func TestFollowFailsOnKeysItCannotApplyNow(t *testing.T) {
	cfg, err := config.Load(context.Background(), config.Layers{Defaults: map[string]any{
		"caller_limits.max_concurent": 10,
	}})
	if err != nil {
		t.Fatal(err)
	}
	limiter, err := resilience.NewCallerLimiter(resilience.CallerLimits{MaxConcurrent: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = config.Follow(cfg, "caller_limits", limiter.Update)
	if !errors.Is(err, config.ErrUnknownKey) || !strings.Contains(err.Error(), "caller_limits.max_concurent") {
		t.Errorf("Follow = %v, want the unknown key named", err)
	}
	if err := config.Follow(cfg, "nothing.here", limiter.Update); !errors.Is(err, resilience.ErrInvalidConfig) {
		t.Errorf("Follow of an empty prefix = %v, want the limiter's refusal of zero limits", err)
	}
	if got := limiter.Limits(); got != (resilience.CallerLimits{MaxConcurrent: 1}) {
		t.Errorf("limits %+v, want them unchanged", got)
	}
}

func TestFollowCallerLimits(t *testing.T) {
	mem := config.NewMemorySource(map[string]any{"caller_limits.max_concurrent": "1"})
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{mem}})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	limiter, err := resilience.NewCallerLimiter(resilience.CallerLimits{MaxConcurrent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "caller_limits", limiter.Update); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held, err := limiter.Acquire(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := limiter.Acquire(ctx, "web"); !errors.Is(err, resilience.ErrRejected) {
		t.Fatalf("second request with max_concurrent 1: %v, want it rejected", err)
	}
	mem.Replace(map[string]any{"caller_limits.max_concurrent": "2", "caller_limits.rate": "1000"})
	vitamintest.Eventually(t, wait, func() error {
		if got := limiter.Limits(); got != (resilience.CallerLimits{MaxConcurrent: 2, Rate: 1000}) {
			return fmt.Errorf("limits %+v", got)
		}
		return nil
	})
	p, err := limiter.Acquire(ctx, "web")
	if err != nil {
		t.Fatalf("request after max_concurrent was raised: %v", err)
	}
	p.Release()
	held.Release()
}

// TestOverrideKeysFromFileAndEnvironment: a method target spelled the way
// that survives a file and the environment reaches Registry.For.
func TestOverrideKeysFromFileAndEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.yaml")
	writeFile(t, file, `
resilience:
  default:
    timeout: 1s
  overrides:
    orders_pkg_orders_get:
      timeout: 2s
    payments:
      timeout: 3s
`)
	env := []string{
		// "__" is a literal "_": both name keys of the same target.
		"APP_RESILIENCE_OVERRIDES_ORDERS__PKG__ORDERS__GET_RETRY_MAX__ATTEMPTS=4",
		"APP_RESILIENCE_OVERRIDES_INVENTORY__PKG__STOCK__RESERVE_TIMEOUT=5s",
	}
	reported := make(chan error, 10)
	cfg, err := config.Load(context.Background(), config.Layers{File: file, EnvPrefix: "APP_"},
		config.WithEnviron(func() []string { return env }), config.WithErrorHandler(func(err error) { reported <- err }))
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	registry, err := resilience.NewRegistry(resilience.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "resilience", registry.Update); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		service, method string
		want            policy
	}{
		{"orders", "pkg.Orders/Get", policy{"orders/pkg.Orders/Get", 2 * time.Second, 4}}, // file and environment merged
		{"orders", "pkg.Orders/List", policy{"orders", time.Second, 0}},
		{"inventory", "pkg.Stock/Reserve", policy{"inventory/pkg.Stock/Reserve", 5 * time.Second, 0}},
		{"payments", "pkg.Payments/Charge", policy{"payments", 3 * time.Second, 0}},
	} {
		if e := policyFor(registry, tt.service, tt.method); e != tt.want {
			t.Errorf("For(%q, %q) = %+v, want %+v", tt.service, tt.method, e, tt.want)
		}
	}

	// The Go spelling in a file: "." splits the key, so it is an unknown
	// key, rejected; the last good policies stay.
	replaceFile(t, file, "resilience:\n  overrides:\n    orders/pkg.Orders/Get:\n      timeout: 9s\n")
	select {
	case err := <-reported:
		var ke *config.KeyError
		if !errors.As(err, &ke) || ke.Key != "resilience.overrides.orders/pkg.Orders/Get.timeout" {
			t.Errorf("reported %v; want the key resilience.overrides.orders/pkg.Orders/Get.timeout named", err)
		}
	case <-time.After(wait):
		t.Fatal("no rejection reported")
	}
	if got := registry.For("orders", "pkg.Orders/Get").Policy().Timeout; got != 2*time.Second {
		t.Errorf("timeout %v after a rejected file, want the last good 2s", got)
	}

	// Written with capitals in the file, the key no longer merges with the
	// environment's lower-case one: two spellings of one target, refused.
	replaceFile(t, file, "resilience:\n  overrides:\n    orders_pkg_Orders_Get:\n      timeout: 9s\n")
	select {
	case err := <-reported:
		if !errors.Is(err, resilience.ErrInvalidConfig) || !strings.Contains(err.Error(), `"orders_pkg_Orders_Get" and "orders_pkg_orders_get"`) {
			t.Errorf("reported %v; want both spellings named", err)
		}
	case <-time.After(wait):
		t.Fatal("no rejection reported")
	}
}

// policy is what a test checks of an executor.
type policy struct {
	Name     string
	Timeout  time.Duration
	Attempts int
}

func policyFor(registry *resilience.Registry, service, method string) (p policy) {
	e := registry.For(service, method)
	p.Name, p.Timeout = e.Name(), e.Policy().Timeout
	if rt := e.Policy().Retry; rt != nil {
		p.Attempts = rt.MaxAttempts
	}
	return p
}
