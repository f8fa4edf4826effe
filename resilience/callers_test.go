package resilience_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/ratelimiter"

	"github.com/vitamin-go/vitamin/resilience"
)

func TestCallerLimiterUpdate(t *testing.T) {
	ctx := context.Background()
	// A rate so low that no permit comes back during the test: a burst of 2.
	limits := resilience.CallerLimits{Rate: 0.001, Burst: 2}
	l, err := resilience.NewCallerLimiter(limits)
	if err != nil {
		t.Fatal(err)
	}
	admit := func(caller string) (resilience.CallerPermit, error) {
		t.Helper()
		return l.Acquire(ctx, caller)
	}
	for range 2 {
		if _, err := admit("a"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admit("a"); !errors.Is(err, ratelimiter.ErrExceeded) {
		t.Fatalf("third request of a: %v, want its rate limit", err)
	}

	// A concurrency limit added, the rate unchanged: a keeps its spent
	// burst, b gets one slot.
	limits.MaxConcurrent = 1
	if err := l.Update(limits); err != nil {
		t.Fatal(err)
	}
	if _, err := admit("a"); !errors.Is(err, ratelimiter.ErrExceeded) {
		t.Errorf("a after an unrelated change: %v, want its spent burst kept", err)
	}
	held, err := admit("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit("b"); !errors.Is(err, bulkhead.ErrFull) {
		t.Errorf("second concurrent request of b: %v, want the new concurrency limit", err)
	}

	// The burst changed: a new bucket. The slot held since before the
	// change is released into the bulkhead it came from.
	limits.Burst, limits.MaxConcurrent = 3, 2
	if err := l.Update(limits); err != nil {
		t.Fatal(err)
	}
	p, err := admit("a")
	if err != nil {
		t.Errorf("a after its burst changed: %v, want a fresh burst", err)
	}
	p.Release()
	held.Release()

	// Invalid limits change nothing.
	if err := l.Update(resilience.CallerLimits{Rate: -1}); !errors.Is(err, resilience.ErrInvalidConfig) {
		t.Errorf("Update(rate -1) = %v, want ErrInvalidConfig", err)
	}
	if got := l.Limits(); got != limits {
		t.Errorf("Limits() = %+v after a refused update, want %+v", got, limits)
	}
}

func TestCallerLimiterUpdateUnderLoad(t *testing.T) {
	l, err := resilience.NewCallerLimiter(resilience.CallerLimits{MaxConcurrent: 4})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			callers := []string{"a", "b", "c"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if p, err := l.Acquire(context.Background(), callers[(g+i)%3]); err == nil {
					p.Release()
				} else if !errors.Is(err, resilience.ErrRejected) {
					t.Errorf("Acquire: %v", err)
					return
				}
			}
		})
	}
	for i := range 200 {
		if err := l.Update(resilience.CallerLimits{MaxConcurrent: 1 + i%4, Rate: float64(1000 + i%2)}); err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
}
