package resilience

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	fsbudget "github.com/failsafe-go/failsafe-go/budget"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

const milli = 1000

// defaultBudgetWait is Budget.MaxWait's default.
const defaultBudgetWait = time.Second

// balanceWait is the longest a retry waits for calls in flight to earn
// back a spent balance: in a storm, when every call fails, waiting longer
// would only make each failing call slower.
const balanceWait = 100 * time.Millisecond

// budgetPoll is how often a retry waiting for a running retry to end looks
// again: a retry lasts about one attempt, so the first looks come soon.
var budgetPoll = backoff.Backoff{Initial: 250 * time.Microsecond, Max: 5 * time.Millisecond}

// retryBudget is a retry and hedge budget. execute counts the calls and
// takes a permit (acquire) before each retry, which may wait for a running
// retry to end; hedged groups take one without waiting (TryAcquirePermit).
// It has the method set of failsafe-go's budget interface. Unlike
// failsafe-go's own budget, which only bounds retries in flight, it also
// bounds retries as a share of calls, which holds for sequential callers
// too.
//
// It is safe for concurrent use.
type retryBudget struct {
	deposit        int64 // milli-retries earned per call
	maxBalance     int64 // milli-retries
	ratio          float64
	minConcurrency int32

	balance   atomic.Int64 // milli-retries
	loan      atomic.Int64 // milli-retries advanced at start, not yet earned back
	calls     atomic.Int32 // primary calls in flight
	permits   atomic.Int32 // retries and hedges in flight
	exhausted atomic.Uint64
	onExhaust func(kind string)
	wait      time.Duration // Budget.MaxWait; 0: no waiting
}

var _ fsbudget.Budget = (*retryBudget)(nil)

func newRetryBudget(spec Budget, onExhaust func(kind string)) *retryBudget {
	ratio := spec.Ratio
	if ratio == 0 {
		ratio = 0.2
	}
	minConc := spec.MinConcurrency
	if minConc == 0 {
		minConc = 3
	}
	maxBal := spec.MaxBalance
	if maxBal == 0 {
		maxBal = 10
	}
	b := &retryBudget{
		deposit:        int64(math.Round(ratio * milli)),
		maxBalance:     int64(maxBal) * milli,
		ratio:          ratio,
		minConcurrency: int32(min(minConc, math.MaxInt32)),
		onExhaust:      onExhaust,
		wait:           max(spec.MaxWait, 0),
	}
	if spec.MaxWait == 0 {
		b.wait = defaultBudgetWait
	}
	if b.deposit > 0 {
		// Advance one retry, so that a new process can retry its first
		// failure; the first 1/Ratio calls earn it back, after which
		// retries ≤ Ratio × calls holds again.
		b.balance.Store(milli)
		b.loan.Store(milli)
	}
	return b
}

// Rate returns retries and hedges in flight as a share of calls in flight.
func (b *retryBudget) Rate() float64 {
	c := b.calls.Load()
	if c <= 0 {
		return 0
	}
	return float64(b.permits.Load()) / float64(c)
}

// RecordExecution is called when a call that may retry or hedge starts:
// it earns the call's share of a retry.
func (b *retryBudget) RecordExecution() {
	b.calls.Add(1)
	if b.loan.Load() > 0 && b.loan.Add(-b.deposit) > -b.deposit {
		return // this call's share repays the advance
	}
	for {
		cur := b.balance.Load()
		if cur >= b.maxBalance {
			return
		}
		if b.balance.CompareAndSwap(cur, min(cur+b.deposit, b.maxBalance)) {
			return
		}
	}
}

// ReleaseExecution is called when such a call ends.
func (b *retryBudget) ReleaseExecution() { b.calls.Add(-1) }

// TryAcquirePermit is called before a hedge: it takes a permit if the
// budget has one now.
func (b *retryBudget) TryAcquirePermit() bool {
	ok, _ := b.try()
	return ok
}

// try takes a permit, or reports whether it was refused because too many
// retries and hedges are running (busy) rather than for want of balance.
func (b *retryBudget) try() (ok, busy bool) {
	limit := max(b.minConcurrency, int32(b.ratio*float64(b.calls.Load())))
	if b.permits.Add(1) > limit {
		b.permits.Add(-1)
		return false, true
	}
	for {
		cur := b.balance.Load()
		if cur < milli {
			b.permits.Add(-1)
			return false, false
		}
		if b.balance.CompareAndSwap(cur, cur-milli) {
			return true, false
		}
	}
}

// acquire takes a permit for a retry. If the budget is short for the
// moment it waits, so that a burst of failures is paced instead of failed:
// up to b.wait while as many retries and hedges as allowed are running,
// and up to balanceWait (b.wait if shorter) while the balance is spent but
// other calls in flight can earn it back; a caller alone with a spent
// balance fails at once. It returns nil, ctx's error if ctx ended while it
// waited, or ErrBudgetExhausted (counted as exhausted).
func (b *retryBudget) acquire(ctx context.Context) error {
	ok, busy := b.try()
	var start time.Time
	for n := 1; !ok && b.wait > 0; n++ {
		limit := b.wait
		if !busy {
			if b.calls.Load() <= 1 {
				break // nobody else to earn it back
			}
			limit = min(limit, balanceWait)
		}
		if n == 1 {
			start = time.Now()
		}
		d := min(budgetPoll.Delay(n), limit-time.Since(start))
		if d <= 0 {
			break
		}
		if !backoff.Sleep(ctx, d) {
			return ctx.Err()
		}
		ok, busy = b.try()
	}
	if !ok {
		b.exceeded("retry")
		return ErrBudgetExhausted
	}
	return nil
}

// ReleasePermit is called when a retry or hedge ends.
func (b *retryBudget) ReleasePermit() { b.permits.Add(-1) }

// OnBudgetExceeded counts a refused permit (failsafe-go's budget interface).
func (b *retryBudget) OnBudgetExceeded(kind fsbudget.ExecutionType, _ failsafe.ExecutionInfo) {
	b.exceeded(string(kind))
}

// exceeded counts a retry or hedge ("retry", "hedge") the budget refused.
func (b *retryBudget) exceeded(kind string) {
	b.exhausted.Add(1)
	if b.onExhaust != nil {
		b.onExhaust(kind)
	}
}

// left returns the whole retries the budget holds now.
func (b *retryBudget) left() float64 { return float64(b.balance.Load()) / milli }
