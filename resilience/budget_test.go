package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// fillBalance makes the calls that fill e's budget: 5 repay the advance,
// 50 more earn 10 retries.
func fillBalance(t *testing.T, e *resilience.Executor) {
	t.Helper()
	for range 55 {
		if err := e.Run(context.Background(), func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// burst runs calls concurrent calls whose first attempts all fail at once
// (the calls in flight to an instance that just died); each retry waits
// for release before it succeeds. It returns the calls' errors and the
// most retries that ran at once.
func burst(e *resilience.Executor, calls int, release <-chan struct{}) ([]error, int32) {
	var failing sync.WaitGroup
	failing.Add(calls)
	var running, most atomic.Int32
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			first := true
			errs[i] = e.Run(context.Background(), func(context.Context) error {
				if first {
					first = false
					failing.Done()
					failing.Wait() // every call is in flight when they fail
					return errBoom
				}
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				return nil
			})
		})
	}
	wg.Wait()
	return errs, most.Load()
}

// TestBudgetPacesABurst: when more calls fail at once than the budget lets
// retry at once, the others wait for a running retry to end instead of
// failing, and no more than the limit run at once.
func TestBudgetPacesABurst(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry: &resilience.Retry{MaxAttempts: 2},
		// 4 calls in flight: max(1, 0.2 × 4) = 1 retry at once.
		Budget: &resilience.Budget{MinConcurrency: 1, MaxWait: time.Minute},
	})
	fillBalance(t, e)
	release := make(chan struct{})
	close(release)
	errs, most := burst(e, 4, release)
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("calls failed: %v", err)
	}
	if most != 1 {
		t.Fatalf("%d retries ran at once, want 1", most)
	}
	if s := e.Snapshot(); s.Retries != 4 || s.BudgetExhausted != 0 {
		t.Fatalf("%d retries, %d refused; want 4, 0", s.Retries, s.BudgetExhausted)
	}
}

// TestBudgetWithoutWaiting: with a negative MaxWait, the retries beyond the
// limit fail at once with ErrBudgetExhausted, carrying the attempt's error.
func TestBudgetWithoutWaiting(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry:  &resilience.Retry{MaxAttempts: 2},
		Budget: &resilience.Budget{MinConcurrency: 1, MaxWait: -1},
	})
	fillBalance(t, e)
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) }) // also if the test fails first
	done := make(chan []error, 1)
	go func() {
		errs, _ := burst(e, 4, release)
		done <- errs
	}()
	// The one retry admitted waits until the three others were refused.
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := e.Snapshot().BudgetExhausted; n < 3 {
			return fmt.Errorf("%d retries refused", n)
		}
		return nil
	})
	once.Do(func() { close(release) })
	errs := <-done
	refused := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, resilience.ErrBudgetExhausted) && errors.Is(err, errBoom):
			refused++
		default:
			t.Fatalf("call failed with %v, want ErrBudgetExhausted carrying the attempt's error", err)
		}
	}
	if refused != 3 {
		t.Fatalf("%d calls refused a retry, want 3", refused)
	}
}

// TestBudgetDoesNotWaitAlone: a caller alone with a spent balance fails at
// once: nobody else would earn the balance back while it waited.
func TestBudgetDoesNotWaitAlone(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry:  &resilience.Retry{MaxAttempts: 3},
		Budget: &resilience.Budget{Ratio: 0.01, MaxBalance: 1, MaxWait: time.Hour},
	})
	if err := e.Run(context.Background(), fail); !errors.Is(err, resilience.ErrBudgetExhausted) {
		t.Fatalf("got %v, want ErrBudgetExhausted", err)
	}
}

// TestBudgetBalanceWaitIsShort: a retry finding the balance spent waits
// only briefly for other calls to earn it back, whatever MaxWait says, so
// that in a storm failing calls still fail soon.
func TestBudgetBalanceWaitIsShort(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry:  &resilience.Retry{MaxAttempts: 3},
		Budget: &resilience.Budget{Ratio: 0.01, MaxBalance: 1, MaxWait: time.Hour},
	})
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() { // another call in flight, which could earn the balance back
		done <- e.Run(context.Background(), func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	defer func() {
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The advance pays one retry; the second finds the balance spent.
	if err := e.Run(context.Background(), fail); !errors.Is(err, resilience.ErrBudgetExhausted) {
		t.Fatalf("got %v, want ErrBudgetExhausted", err)
	}
}
