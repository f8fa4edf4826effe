package resilience

import (
	"math"
	"sync/atomic"

	"github.com/failsafe-go/failsafe-go"
	fsbudget "github.com/failsafe-go/failsafe-go/budget"
)

const milli = 1000

// retryBudget is a retry and hedge budget. failsafe-go's retry policy
// consults it through its WithBudget hook (it has the method set of
// failsafe-go's internal budget interface); hedged groups call it
// directly. Unlike failsafe-go's own budget, which only bounds retries in
// flight, it also bounds retries as a share of calls, which holds for
// sequential callers too.
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

// RecordExecution is called by failsafe-go when a call starts: it earns the
// call's share of a retry.
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

// ReleaseExecution is called by failsafe-go when a call ends.
func (b *retryBudget) ReleaseExecution() { b.calls.Add(-1) }

// TryAcquirePermit is called before a retry (by failsafe-go) or a hedge.
func (b *retryBudget) TryAcquirePermit() bool {
	limit := max(b.minConcurrency, int32(b.ratio*float64(b.calls.Load())))
	if b.permits.Add(1) > limit {
		b.permits.Add(-1)
		return false
	}
	for {
		cur := b.balance.Load()
		if cur < milli {
			b.permits.Add(-1)
			return false
		}
		if b.balance.CompareAndSwap(cur, cur-milli) {
			return true
		}
	}
}

// ReleasePermit is called when a retry or hedge ends.
func (b *retryBudget) ReleasePermit() { b.permits.Add(-1) }

// OnBudgetExceeded is called by failsafe-go when a permit was refused.
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

// budgetView lets the retry policy spend the budget while execute counts
// the calls.
type budgetView struct {
	*retryBudget
}

func (budgetView) RecordExecution()  {}
func (budgetView) ReleaseExecution() {}
