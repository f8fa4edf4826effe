package consul_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

var errBoom = errors.New("boom")

// txn sets (or, for a nil value, deletes) the keys under prefix in one
// Consul KV transaction, so that they change at one index.
func txn(t testing.TB, c *vitamintest.Consul, prefix string, keys map[string]*string) {
	t.Helper()
	var ops api.KVTxnOps
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if v := keys[k]; v != nil {
			ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: prefix + k, Value: []byte(*v)})
		} else {
			ops = append(ops, &api.KVTxnOp{Verb: api.KVDelete, Key: prefix + k})
		}
	}
	ok, resp, _, err := c.Client.KV().Txn(ops, nil)
	if err != nil || !ok {
		t.Fatalf("txn: %v %+v", err, resp)
	}
}

func set(kv map[string]string) map[string]*string {
	out := make(map[string]*string, len(kv))
	for k, v := range kv {
		out[k] = &v
	}
	return out
}

// followed loads a configuration over Consul KV under a prefix named
// after the test, holding keys, and a registry following its
// "resilience" keys.
func followed(t testing.TB, keys map[string]string, opts ...config.Option) (string, *config.Config, *resilience.Registry) {
	t.Helper()
	prefix := "test/" + t.Name() + "/"
	txn(t, agent, prefix, set(keys))
	cfg := load(t, config.Layers{Sources: []config.Source{source(t, agent, consul.Config{Prefix: prefix})}}, opts...)
	registry, err := resilience.NewRegistry(resilience.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "resilience", registry.Update); err != nil {
		t.Fatal(err)
	}
	return prefix, cfg, registry
}

// TestPoliciesFollowConsulKVWhileCallsRun changes a retry, a breaker and
// one method's timeout in Consul KV while calls run, and watches the
// calls change.
func TestPoliciesFollowConsulKVWhileCallsRun(t *testing.T) {
	prefix, _, registry := followed(t, map[string]string{
		"resilience/default/retry/max_attempts":                      "2",
		"resilience/overrides/payments/circuit_breaker/window_size":  "100",
		"resilience/overrides/payments/circuit_breaker/failure_rate": "1",
		"resilience/overrides/payments/circuit_breaker/min_requests": "100",
		"resilience/overrides/payments/circuit_breaker/open_for":     "1h",
		"resilience/overrides/orders_pkg_orders_get/timeout":         "1h",
	})
	ctx := context.Background()
	applied := func(what string, ok func(resilience.Config) bool) {
		t.Helper()
		vitamintest.Eventually(t, wait, func() error {
			if !ok(registry.Config()) {
				return fmt.Errorf("%s not applied: %+v", what, registry.Config())
			}
			return nil
		})
	}

	// Calls run throughout, on targets whose policies change, and none
	// fails (the breaker of payments, opened on purpose below, would
	// refuse them there).
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, tg := range []resilience.Target{
		{Service: "inventory", Method: "pkg.Stock/Get"},
		{Service: "orders", Method: "pkg.Orders/Get"},
	} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if err := registry.For(tg.Service, tg.Method).Run(ctx, func(context.Context) error { return nil }); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		if calls.Load() == 0 || failed.Load() != 0 {
			t.Errorf("background calls: %d, %d failed; want some and none failed", calls.Load(), failed.Load())
		}
	}()

	attempts := func(service string) (int, error) {
		var n atomic.Int32
		err := registry.For(service, "pkg.Any/Call").Run(ctx, func(context.Context) error { n.Add(1); return errBoom })
		return int(n.Load()), err
	}

	// Attempt counts: 2, then 4.
	if n, _ := attempts("inventory"); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	put(t, agent, prefix+"resilience/default/retry/max_attempts", "4")
	applied("max_attempts 4", func(c resilience.Config) bool { return c.Default.Retry.MaxAttempts == 4 })
	if n, _ := attempts("inventory"); n != 4 {
		t.Errorf("%d attempts after the change, want 4", n)
	}

	// Breaker thresholds: with min_requests 100 five failures leave it
	// closed; with 3 (and a window of 10) the fourth call is refused.
	for range 5 {
		if _, err := attempts("payments"); !errors.Is(err, errBoom) {
			t.Fatalf("payments: %v, want its own failure", err)
		}
	}
	txn(t, agent, prefix, set(map[string]string{
		"resilience/overrides/payments/circuit_breaker/window_size":  "10",
		"resilience/overrides/payments/circuit_breaker/min_requests": "3",
	}))
	applied("breaker thresholds", func(c resilience.Config) bool {
		return c.Overrides["payments"].CircuitBreaker.MinRequests == 3
	})
	for range 3 {
		_, _ = attempts("payments")
	}
	if _, err := attempts("payments"); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Errorf("payments after 3 failures with min_requests 3: %v, want the breaker open", err)
	}
	// An unrelated change keeps the open breaker open.
	put(t, agent, prefix+"resilience/default/retry/max_attempts", "3")
	applied("max_attempts 3", func(c resilience.Config) bool { return c.Default.Retry.MaxAttempts == 3 })
	if _, err := attempts("payments"); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Errorf("payments after an unrelated change: %v, want the breaker still open", err)
	}

	// One method's timeout: from an hour to 20ms; its neighbour has none.
	deadline := func(method string) (time.Duration, bool) {
		var left time.Duration
		var ok bool
		_ = registry.For("orders", method).Run(ctx, func(ctx context.Context) error {
			var d time.Time
			if d, ok = ctx.Deadline(); ok {
				left = time.Until(d)
			}
			return nil
		})
		return left, ok
	}
	if left, ok := deadline("pkg.Orders/Get"); !ok || left < 30*time.Minute {
		t.Errorf("orders Get deadline in %v (%v), want about an hour", left, ok)
	}
	put(t, agent, prefix+"resilience/overrides/orders_pkg_orders_get/timeout", "20ms")
	applied("timeout 20ms", func(c resilience.Config) bool {
		return c.Overrides["orders_pkg_orders_get"].Timeout == 20*time.Millisecond
	})
	err := registry.For("orders", "pkg.Orders/Get").Run(ctx, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, resilience.ErrTimeout) {
		t.Errorf("orders Get blocking past its new timeout: %v, want ErrTimeout", err)
	}
	if _, ok := deadline("pkg.Orders/List"); ok {
		t.Error("orders List has a deadline; want none (the override is for Get only)")
	}
}

// TestBadPoliciesInConsulKVAreRejectedWhole writes bad changes to Consul
// KV, each in one transaction: each is rejected whole, reported and kept
// for an operator, and the last good policies stay.
func TestBadPoliciesInConsulKVAreRejectedWhole(t *testing.T) {
	reported := make(chan error, 10)
	prefix, cfg, registry := followed(t, map[string]string{
		"resilience/default/retry/max_attempts":           "3",
		"resilience/default/circuit_breaker/window_size":  "10",
		"resilience/default/circuit_breaker/failure_rate": "0.5",
		"resilience/default/circuit_breaker/open_for":     "1s",
	}, config.WithErrorHandler(func(err error) { reported <- err }))
	good := registry.Config()
	if good.Default.Retry == nil || good.Default.CircuitBreaker == nil {
		t.Fatalf("registry %+v, want the policies from Consul KV", good)
	}

	for _, tc := range []struct {
		name   string
		change map[string]string // applied in one transaction, then undone
		key    string            // the key the rejection names
		is     error
	}{
		{"malformed value", map[string]string{"resilience/default/retry/max_attempts": "3x"},
			"resilience.default.retry.max_attempts", config.ErrInvalidValue},
		{"out of range", map[string]string{"resilience/default/circuit_breaker/failure_rate": "2"},
			"resilience", resilience.ErrInvalidConfig},
		{"unknown key", map[string]string{"resilience/default/retry/max_atempts": "5"},
			"resilience.default.retry.max_atempts", config.ErrUnknownKey},
		{"wrong type", map[string]string{"resilience/default/bulkhead": "10"},
			"resilience.default.bulkhead", config.ErrInvalidValue},
		{"valid key by key, invalid as a whole", map[string]string{"resilience/default/circuit_breaker/window": "1m"},
			"resilience", resilience.ErrInvalidConfig}, // window and window_size
		{"three keys, the third bad", map[string]string{
			"resilience/default/retry/max_attempts":           "5",
			"resilience/default/circuit_breaker/failure_rate": "0.9",
			"resilience/default/timeout":                      "soon",
		}, "resilience.default.timeout", config.ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undo := map[string]*string{}
			for k := range tc.change {
				v, _, err := agent.Client.KV().Get(prefix+k, nil)
				if err != nil {
					t.Fatal(err)
				}
				if v != nil {
					undo[k] = new(string(v.Value))
				} else {
					undo[k] = nil
				}
			}
			txn(t, agent, prefix, set(tc.change))
			select {
			case err := <-reported:
				var re *config.RejectedError
				if !errors.As(err, &re) || re.Key != "resilience" || !errors.Is(err, tc.is) {
					t.Fatalf("reported %v; want a *RejectedError for resilience matching %v", err, tc.is)
				}
			case <-time.After(wait):
				t.Fatal("no rejection reported")
			}
			if diff := cmp.Diff(good, registry.Config()); diff != "" {
				t.Errorf("policies after a rejected change (-want the last good +got):\n%s", diff)
			}
			if rs := cfg.Rejections(); len(rs) != 1 || rs[0].Key != tc.key {
				t.Errorf("Rejections() = %+v; want one naming %s", rs, tc.key)
			}

			txn(t, agent, prefix, undo)
			vitamintest.Eventually(t, wait, func() error {
				if rs := cfg.Rejections(); len(rs) != 0 {
					return fmt.Errorf("rejections after the undo: %+v", rs)
				}
				return nil
			})
		})
	}
	select {
	case err := <-reported:
		t.Errorf("unexpected report: %v", err)
	default:
	}
}
