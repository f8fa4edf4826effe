package resilience_test

import (
	"context"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/vitamin-go/vitamin/resilience"
)

// The policies of both benchmarks, as Vitamin specs and as the same
// failsafe-go policies built by hand.
var (
	benchRetry   = &resilience.Retry{MaxAttempts: 3, Backoff: 10 * time.Millisecond, Jitter: 0.2}
	benchBudget  = &resilience.Budget{Ratio: 0.2, MinConcurrency: 3}
	benchBreaker = &resilience.CircuitBreaker{WindowSize: 100, FailureRate: 0.5, MinRequests: 20, OpenFor: 5 * time.Second}
)

func fsRetryBreakerBudget() []failsafe.Policy[any] {
	b := budget.NewBuilder().WithMaxRate(0.2).WithMinConcurrency(3).Build()
	rp := retrypolicy.NewBuilder[any]().WithMaxAttempts(3).WithBackoff(10*time.Millisecond, time.Second).
		WithJitterFactor(0.2).WithBudget(b).ReturnLastFailure().Build()
	cb := circuitbreaker.NewBuilder[any]().WithFailureThresholdRatio(50, 100).
		WithFailureRateThreshold(0.5, 20, 0).WithDelay(5 * time.Second).Build()
	return []failsafe.Policy[any]{rp, cb}
}

func BenchmarkRetryBreakerBudget(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.Run("vitamin", func(b *testing.B) {
		e, err := resilience.NewExecutor("bench", resilience.Policy{Retry: benchRetry, Budget: benchBudget, CircuitBreaker: benchBreaker})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := e.Run(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		ex := failsafe.With(fsRetryBreakerBudget()...)
		b.ReportAllocs()
		for b.Loop() {
			if err := ex.WithContext(ctx).Run(func() error { return fn(ctx) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFullPolicySet is the success path of every policy at once
// (retry, budget, breaker, rate limit, bulkhead, timeout), without and with
// hedging: Vitamin's own hedging against failsafe-go's hedgepolicy used
// directly with the same policies.
func BenchmarkFullPolicySet(b *testing.B) {
	for _, hedge := range []bool{false, true} {
		name := "no-hedge"
		if hedge {
			name = "with-hedge"
		}
		b.Run(name, func(b *testing.B) { benchFull(b, hedge) })
	}
}

func benchFull(b *testing.B, hedge bool) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.Run("vitamin", func(b *testing.B) {
		p := resilience.Policy{
			Timeout:        time.Second,
			Retry:          benchRetry,
			Budget:         benchBudget,
			CircuitBreaker: benchBreaker,
			Bulkhead:       &resilience.Bulkhead{MaxConcurrent: 1000},
			RateLimit:      &resilience.RateLimit{Rate: 1e8, Burst: 1e6},
		}
		if hedge {
			p.Hedge = &resilience.Hedge{Delay: time.Second}
		}
		e, err := resilience.NewExecutor("bench", p)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := e.Run(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		ps := fsRetryBreakerBudget()
		rl := ratelimiter.NewBursty[any](1e6, 10*time.Millisecond)
		bh := bulkhead.New[any](1000)
		to := timeout.New[any](time.Second)
		var ex failsafe.Executor[any]
		if hedge {
			bud := budget.NewBuilder().WithMaxRate(0.2).WithMinConcurrency(3).Build()
			hp := hedgepolicy.NewBuilderWithDelay[any](time.Second).WithBudget(bud).Build()
			ex = failsafe.With(ps[0], hp, ps[1], rl, bh, to)
		} else {
			ex = failsafe.With(ps[0], ps[1], rl, bh, to)
		}
		b.ReportAllocs()
		for b.Loop() {
			err := ex.WithContext(ctx).RunWithExecution(func(exec failsafe.Execution[any]) error { return fn(exec.Context()) })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRetryAmplification reports attempts per call at a 50 % failure
// rate with 3 attempts and the default budget (budget: ≤ 1.2).
func BenchmarkRetryAmplification(b *testing.B) {
	e, err := resilience.NewExecutor("amp", resilience.Policy{Retry: &resilience.Retry{MaxAttempts: 3}, Budget: &resilience.Budget{}})
	if err != nil {
		b.Fatal(err)
	}
	attempts, calls := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		calls++
		_ = e.Run(context.Background(), func(context.Context) error {
			attempts++
			if attempts%2 == 0 {
				return errBoom
			}
			return nil
		})
	}
	b.ReportMetric(float64(attempts)/float64(calls), "attempts/call")
}

// BenchmarkRegistryFor measures looking up a target's executor.
func BenchmarkRegistryFor(b *testing.B) {
	r, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{Retry: benchRetry}})
	if err != nil {
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

// BenchmarkRetryBreakerBudgetParallel is the success path under contention.
func BenchmarkRetryBreakerBudgetParallel(b *testing.B) {
	e, err := resilience.NewExecutor("bench", resilience.Policy{Retry: benchRetry, Budget: benchBudget, CircuitBreaker: benchBreaker})
	if err != nil {
		b.Fatal(err)
	}
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_ = e.Run(ctx, fn)
		}
	})
}

// BenchmarkDerivedAttemptContext is a call whose function derives a context
// from the attempt's and keeps it past the attempt, as grpc-go and net/http
// do: ending the attempt cancels the derived context with its cause.
func BenchmarkDerivedAttemptContext(b *testing.B) {
	for _, hedge := range []bool{false, true} {
		name := "timeout"
		p := resilience.Policy{Timeout: time.Second}
		if hedge {
			name = "timeout+hedge"
			p.Hedge = &resilience.Hedge{Delay: time.Second}
		}
		b.Run(name, func(b *testing.B) {
			e, err := resilience.NewExecutor("bench", p)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var derived context.Context
			var stop context.CancelFunc
			fn := func(ctx context.Context) error { derived, stop = context.WithCancel(ctx); return nil }
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Run(ctx, fn); err != nil {
					b.Fatal(err)
				}
				if context.Cause(derived) != context.Canceled {
					b.Fatal("the derived context did not end with the attempt")
				}
				stop()
			}
		})
	}
}
