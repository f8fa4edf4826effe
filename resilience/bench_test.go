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

func BenchmarkFullPolicySet(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.Run("vitamin", func(b *testing.B) {
		e, err := resilience.NewExecutor("bench", resilience.Policy{
			Timeout:        time.Second,
			Retry:          benchRetry,
			Budget:         benchBudget,
			CircuitBreaker: benchBreaker,
			Bulkhead:       &resilience.Bulkhead{MaxConcurrent: 1000},
			RateLimit:      &resilience.RateLimit{Rate: 1e8, Burst: 1e6},
			Hedge:          &resilience.Hedge{Delay: time.Second},
		})
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
		bud := budget.NewBuilder().WithMaxRate(0.2).WithMinConcurrency(3).Build()
		hp := hedgepolicy.NewBuilderWithDelay[any](time.Second).WithBudget(bud).Build()
		rl := ratelimiter.NewBursty[any](1e6, 10*time.Millisecond)
		bh := bulkhead.New[any](1000)
		to := timeout.New[any](time.Second)
		ex := failsafe.With(ps[0], hp, ps[1], rl, bh, to)
		b.ReportAllocs()
		for b.Loop() {
			err := ex.WithContext(ctx).RunWithExecution(func(exec failsafe.Execution[any]) error { return fn(exec.Context()) })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
