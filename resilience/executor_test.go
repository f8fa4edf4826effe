package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/ratelimiter"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

var errBoom = errors.New("boom")

func mustExecutor(t *testing.T, p resilience.Policy, opts ...resilience.Option) *resilience.Executor {
	t.Helper()
	e, err := resilience.NewExecutor("test", p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func succeed(context.Context) error { return nil }
func fail(context.Context) error    { return errBoom }

// waitHalfOpen polls until the breaker lets a call through again.
func waitHalfOpen(t *testing.T, e *resilience.Executor, fn func(context.Context) error) error {
	t.Helper()
	var got error
	vitamintest.Eventually(t, 5*time.Second, func() error {
		got = e.Run(context.Background(), fn)
		if errors.Is(got, resilience.ErrCircuitOpen) {
			return got
		}
		return nil
	})
	return got
}

func TestCircuitBreakerLifecycle(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{
		WindowSize: 4, FailureRate: 0.5, MinRequests: 4, OpenFor: 20 * time.Millisecond, HalfOpenProbes: 2,
	}})
	ctx := context.Background()

	// Below the minimum number of requests the breaker stays closed even at 100 % failures.
	for range 3 {
		if err := e.Run(ctx, fail); !errors.Is(err, errBoom) {
			t.Fatalf("call %v, want the failure itself", err)
		}
	}
	if got := e.Snapshot().Circuit; got != "closed" {
		t.Fatalf("circuit %q after 3 of 4 minimum requests, want closed", got)
	}
	// The fourth failure reaches the threshold: the breaker opens.
	_ = e.Run(ctx, fail)
	if got := e.Snapshot().Circuit; got != "open" {
		t.Fatalf("circuit %q after 4 failures, want open", got)
	}

	// While open, calls are rejected without running.
	var ran atomic.Int32
	err := e.Run(ctx, func(context.Context) error { ran.Add(1); return nil })
	if !errors.Is(err, resilience.ErrCircuitOpen) || !errors.Is(err, circuitbreaker.ErrOpen) {
		t.Fatalf("call while open: %v, want ErrCircuitOpen", err)
	}
	var re *resilience.Error
	if !errors.As(err, &re) || re.RetryAfter <= 0 {
		t.Fatalf("open-circuit error %#v carries no RetryAfter hint", err)
	}
	if ran.Load() != 0 {
		t.Fatal("the function ran while the circuit was open")
	}

	// After OpenFor it half-opens: probes run, and two successes close it.
	if err := waitHalfOpen(t, e, succeed); err != nil {
		t.Fatalf("first probe: %v", err)
	}
	if got := e.Snapshot().Circuit; got != "half-open" {
		t.Fatalf("circuit %q after one successful probe of two, want half-open", got)
	}
	if err := e.Run(ctx, succeed); err != nil {
		t.Fatalf("second probe: %v", err)
	}
	if got := e.Snapshot().Circuit; got != "closed" {
		t.Fatalf("circuit %q after two successful probes, want closed", got)
	}

	// Open it again; a failed probe reopens it.
	for range 4 {
		_ = e.Run(ctx, fail)
	}
	if got := e.Snapshot().Circuit; got != "open" {
		t.Fatalf("circuit %q, want open", got)
	}
	if err := waitHalfOpen(t, e, fail); !errors.Is(err, errBoom) {
		t.Fatalf("failed probe returned %v, want its own error", err)
	}
	if got := e.Snapshot().Circuit; got != "open" {
		t.Fatalf("circuit %q after a failed probe, want open", got)
	}
	if err := e.Run(ctx, succeed); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("call after failed probe: %v, want ErrCircuitOpen", err)
	}
}

func TestCircuitBreakerTimeWindow(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{
		Window: time.Minute, FailureRate: 0.5, MinRequests: 10, OpenFor: time.Minute,
	}})
	ctx := context.Background()
	for i := range 9 {
		if i%2 == 0 {
			_ = e.Run(ctx, fail)
		} else {
			_ = e.Run(ctx, succeed)
		}
	}
	if got := e.Snapshot().Circuit; got != "closed" {
		t.Fatalf("circuit %q after 9 calls with min 10, want closed", got)
	}
	_ = e.Run(ctx, fail) // 6 of 10 failed
	if got := e.Snapshot().Circuit; got != "open" {
		t.Fatalf("circuit %q after 6 of 10 failures, want open", got)
	}
}

func TestBreakerIgnoresRejectionsAndCancellations(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{
		WindowSize: 2, FailureRate: 0.5, OpenFor: time.Minute,
	}})
	ctx := context.Background()
	for range 5 {
		_ = e.Run(ctx, func(context.Context) error { return context.Canceled })
		_ = e.Run(ctx, func(context.Context) error {
			return resilience.Permanent(resilience.WithOutcome(errBoom, resilience.Outcome{Code: "400"}))
		})
	}
	if got := e.Snapshot().Circuit; got != "closed" {
		t.Fatalf("circuit %q after cancellations and client errors, want closed", got)
	}
}

func TestRetryBudgetBoundsAmplification(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry:  &resilience.Retry{MaxAttempts: 3},
		Budget: &resilience.Budget{Ratio: 0.2},
	})
	rng := rand.New(rand.NewPCG(1, 2))
	const calls = 10000
	attempts := 0
	for range calls {
		_ = e.Run(context.Background(), func(context.Context) error {
			attempts++
			if rng.IntN(2) == 0 {
				return errBoom
			}
			return nil
		})
	}
	amp := float64(attempts) / calls
	t.Logf("attempts/calls = %.4f", amp)
	if amp > 1.2 || amp <= 1 {
		t.Fatalf("attempts/calls = %.4f, want in (1, 1.2]", amp)
	}
	s := e.Snapshot()
	if s.BudgetExhausted == 0 || s.Retries == 0 {
		t.Fatalf("snapshot %+v: want retries and budget exhaustions counted", s)
	}
}

func TestRetryBudgetErrorKeepsLastFailure(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry:  &resilience.Retry{MaxAttempts: 3},
		Budget: &resilience.Budget{Ratio: 0.01, MaxBalance: 1},
	})
	err := e.Run(context.Background(), fail)
	if !errors.Is(err, resilience.ErrBudgetExhausted) || !errors.Is(err, errBoom) {
		t.Fatalf("got %v, want ErrBudgetExhausted carrying the last failure", err)
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	t.Run("retries until success", func(t *testing.T) {
		e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3, Backoff: time.Microsecond, Jitter: 0.5}})
		n := 0
		err := e.Run(ctx, func(context.Context) error {
			n++
			if n < 3 {
				return errBoom
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("err %v after %d attempts, want success on the third", err, n)
		}
	})
	t.Run("returns the last failure", func(t *testing.T) {
		e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}})
		n := 0
		err := e.Run(ctx, func(context.Context) error { n++; return fmt.Errorf("attempt %d: %w", n, errBoom) })
		if err == nil || err.Error() != "attempt 2: boom" {
			t.Fatalf("got %v, want the second attempt's error", err)
		}
	})
	t.Run("only listed codes", func(t *testing.T) {
		e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3, On: []string{"UNAVAILABLE"}}})
		n := 0
		_ = e.Run(ctx, func(context.Context) error {
			n++
			return resilience.WithOutcome(errBoom, resilience.Outcome{Code: "INVALID_ARGUMENT", Retryable: true})
		})
		if n != 1 {
			t.Fatalf("%d attempts for a code not listed in retry.on, want 1", n)
		}
		n = 0
		_ = e.Run(ctx, func(context.Context) error {
			n++
			return resilience.WithOutcome(errBoom, resilience.Outcome{Code: "UNAVAILABLE"})
		})
		if n != 3 {
			t.Fatalf("%d attempts for a listed code, want 3", n)
		}
	})
	t.Run("permanent errors are not retried", func(t *testing.T) {
		e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}})
		n := 0
		err := e.Run(ctx, func(context.Context) error { n++; return resilience.Permanent(errBoom) })
		if n != 1 || !errors.Is(err, errBoom) {
			t.Fatalf("%d attempts, err %v; want 1 attempt returning the error", n, err)
		}
	})
	t.Run("stops when the caller gives up", func(t *testing.T) {
		e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 5, Backoff: time.Hour}})
		ctx, cancel := context.WithCancel(ctx)
		n := 0
		err := e.Run(ctx, func(context.Context) error { n++; cancel(); return errBoom })
		if n != 1 || !errors.Is(err, context.Canceled) {
			t.Fatalf("%d attempts, err %v; want 1 attempt and context.Canceled", n, err)
		}
	})
}

func TestTimeoutComesFromTheContext(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Timeout: 5 * time.Millisecond, Retry: &resilience.Retry{MaxAttempts: 2}})
	var deadlines atomic.Int32
	err := e.Run(context.Background(), func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); ok {
			deadlines.Add(1)
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, resilience.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
	}
	if deadlines.Load() != 2 {
		t.Fatalf("%d attempts saw a deadline, want both", deadlines.Load())
	}
	// The caller's own deadline is a timeout too.
	e = mustExecutor(t, resilience.Policy{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	err = e.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, resilience.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}

func TestRejectionsAndFallbackCauses(t *testing.T) {
	ctx := context.Background()
	type check struct {
		name     string
		sentinel error
		native   error
	}
	var causes []error
	record := func(_ context.Context, cause error) error { causes = append(causes, cause); return nil }

	// Bulkhead full.
	e := mustExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1}})
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- e.Run(ctx, func(context.Context) error { close(started); <-release; return nil })
	}()
	<-started
	if err := e.RunWithFallback(ctx, succeed, record); err != nil {
		t.Fatalf("fallback result %v, want nil", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Rate limited.
	e = mustExecutor(t, resilience.Policy{RateLimit: &resilience.RateLimit{Rate: 0.001}})
	if err := e.Run(ctx, succeed); err != nil {
		t.Fatalf("first call under the rate limit: %v", err)
	}
	_ = e.RunWithFallback(ctx, succeed, record)

	// Timeout.
	e = mustExecutor(t, resilience.Policy{Timeout: time.Millisecond})
	_ = e.RunWithFallback(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, record)

	// Circuit open.
	e = mustExecutor(t, resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 1, FailureRate: 1, OpenFor: time.Hour}})
	_ = e.Run(ctx, fail)
	_ = e.RunWithFallback(ctx, succeed, record)

	// Plain failure.
	_ = mustExecutor(t, resilience.Policy{}).RunWithFallback(ctx, fail, record)

	want := []check{
		{"bulkhead", resilience.ErrRejected, bulkhead.ErrFull},
		{"rate limit", resilience.ErrRejected, ratelimiter.ErrExceeded},
		{"timeout", resilience.ErrTimeout, context.DeadlineExceeded},
		{"circuit open", resilience.ErrCircuitOpen, circuitbreaker.ErrOpen},
		{"failure", errBoom, errBoom},
	}
	if len(causes) != len(want) {
		t.Fatalf("fallback ran %d times, want %d: %v", len(causes), len(want), causes)
	}
	all := []error{resilience.ErrRejected, resilience.ErrTimeout, resilience.ErrCircuitOpen, resilience.ErrBudgetExhausted}
	for i, w := range want {
		if !errors.Is(causes[i], w.sentinel) || !errors.Is(causes[i], w.native) {
			t.Errorf("%s: fallback cause %v, want it to match %v and %v", w.name, causes[i], w.sentinel, w.native)
		}
		for _, s := range all {
			if s != w.sentinel && errors.Is(causes[i], s) {
				t.Errorf("%s: fallback cause %v also matches %v", w.name, causes[i], s)
			}
		}
	}
}

func TestGetWithFallback(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 2}})
	v, err := resilience.GetWithFallback(context.Background(), e,
		func(context.Context) (string, error) { return "", errBoom },
		func(_ context.Context, cause error) (string, error) { return "cached: " + cause.Error(), nil })
	if err != nil || v != "cached: boom" {
		t.Fatalf("got %q, %v", v, err)
	}
	if s := e.Snapshot(); s.Fallbacks != 1 || s.Retries != 1 || s.Calls != 1 || s.Failures != 1 {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestHedge(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Hedge:  &resilience.Hedge{Delay: time.Millisecond},
		Budget: &resilience.Budget{Ratio: 1, MaxBalance: 1},
	})
	var first atomic.Bool
	// A new budget is advanced one retry or hedge, so the first call can hedge.
	v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (string, error) {
		if first.CompareAndSwap(false, true) {
			<-ctx.Done() // the slow attempt is canceled when the hedge wins
			return "", ctx.Err()
		}
		return "hedge", nil
	})
	if err != nil || v != "hedge" {
		t.Fatalf("got %q, %v; want the hedge's result", v, err)
	}
	if s := e.Snapshot(); s.Hedges != 1 {
		t.Fatalf("snapshot %+v, want 1 hedge", s)
	}
}

func TestConcurrentCallsRespectBulkhead(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Bulkhead: &resilience.Bulkhead{MaxConcurrent: 3, MaxWait: time.Minute}})
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_ = e.Run(context.Background(), func(context.Context) error {
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				cur.Add(-1)
				return nil
			})
		})
	}
	wg.Wait()
	if peak.Load() > 3 {
		t.Fatalf("peak concurrency %d, want at most 3", peak.Load())
	}
}

func TestSlowCallsOpenTheBreaker(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{CircuitBreaker: &resilience.CircuitBreaker{
		WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: time.Hour, SlowCall: time.Millisecond,
	}})
	slow := func(context.Context) error { <-time.After(5 * time.Millisecond); return nil }
	for range 2 {
		if err := e.Run(context.Background(), slow); err != nil {
			t.Fatalf("slow call: %v, want its own (successful) result", err)
		}
	}
	if err := e.Run(context.Background(), succeed); !errors.Is(err, resilience.ErrCircuitOpen) {
		t.Fatalf("after two slow calls: %v, want ErrCircuitOpen", err)
	}
}

func TestCallerUserAgent(t *testing.T) {
	for ua, want := range map[string]string{
		resilience.CallerUserAgent("orders") + " grpc-go/1.85.0":  "orders",
		"grpc-go/1.85.0 " + resilience.CallerUserAgent("billing"): "billing",
		"grpc-go/1.85.0":    "",
		"":                  "",
		"vitamin-caller":    "",
		"xvitamin-caller/a": "",
	} {
		if got := resilience.CallerFromUserAgent(ua); got != want {
			t.Errorf("CallerFromUserAgent(%q) = %q, want %q", ua, got, want)
		}
	}
	for _, ok := range []string{"orders", "orders-v2", "a.b_c~d"} {
		if err := resilience.ValidateCaller(ok); err != nil {
			t.Errorf("ValidateCaller(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "two words", "a/b", "é", strings.Repeat("a", 129)} {
		err := resilience.ValidateCaller(bad)
		if err == nil {
			t.Errorf("ValidateCaller(%q) accepted it", bad)
			continue
		}
		var fe *resilience.FieldError
		if !errors.As(err, &fe) || fe.Field != "caller" || !errors.Is(err, resilience.ErrInvalidConfig) {
			t.Errorf("ValidateCaller(%q) = %v, want a *FieldError for caller behind ErrInvalidConfig", bad, err)
		}
	}
}
