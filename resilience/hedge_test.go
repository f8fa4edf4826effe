package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

// The hedge tests make attempts slow by blocking them on channels or on
// their context; the hedge delay is short so that hedges start at once,
// and no assertion depends on how long anything took.

const hedgeDelay = time.Millisecond

// hedgeOutcome is what an attempt saw when it returned.
type hedgeOutcome struct {
	n   int   // attempt number, from 1
	err error // its context's error when it returned
}

// await receives from ch or fails the test after a generous limit (a hang
// means a cancellation that never came).
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// eventually polls cond until it holds (true) or a generous limit passes
// (false). Unlike vitamintest.Eventually it may run on any goroutine.
func eventually(cond func() bool) bool {
	limit := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(limit) {
			return false
		}
		<-time.After(time.Millisecond)
	}
	return true
}

func TestHedgeSlowAttemptLosesToHedge(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}})
	var n atomic.Int32
	firstDone := make(chan error, 1)
	v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (string, error) {
		if n.Add(1) == 1 {
			<-ctx.Done() // slow: only the winner's decision ends it
			firstDone <- ctx.Err()
			return "", ctx.Err()
		}
		return "hedge", nil
	})
	if err != nil || v != "hedge" {
		t.Fatalf("got %q, %v; want the hedge's result", v, err)
	}
	if got := await(t, firstDone, "the first attempt"); !errors.Is(got, context.Canceled) {
		t.Fatalf("first attempt's context: %v, want canceled", got)
	}
	if s := e.Snapshot(); s.Hedges != 1 || s.Calls != 1 || s.Failures != 0 {
		t.Fatalf("snapshot %+v, want 1 successful call with 1 hedge", s)
	}
}

func TestHedgeFastSuccessStartsNoHedge(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: time.Minute, MaxHedges: 3}})
	var attempts atomic.Int32
	for range 100 {
		if err := e.Run(context.Background(), func(context.Context) error { attempts.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if got := attempts.Load(); got != 100 {
		t.Fatalf("%d attempts for 100 fast calls, want 100", got)
	}
	if s := e.Snapshot(); s.Hedges != 0 {
		t.Fatalf("snapshot %+v, want no hedge", s)
	}
}

func TestHedgeMaxHedges(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay, MaxHedges: 2}})
	var n atomic.Int32
	started := make(chan int, 10)
	release := make(chan struct{})
	done := make(chan hedgeOutcome, 10)
	type result struct {
		v   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (int, error) {
			i := int(n.Add(1))
			started <- i
			if i == 3 { // the last hedge allowed wins when released
				<-release
				return i, nil
			}
			<-ctx.Done()
			done <- hedgeOutcome{i, ctx.Err()}
			return 0, ctx.Err()
		})
		res <- result{v, err}
	}()
	for range 3 {
		await(t, started, "an attempt to start")
	}
	// Give a hedge beyond MaxHedges time to show up (it must not); this
	// wait does not synchronise anything.
	<-time.After(50 * hedgeDelay)
	close(release)
	r := await(t, res, "the call")
	if r.err != nil || r.v != 3 {
		t.Fatalf("got %d, %v; want the second hedge's result", r.v, r.err)
	}
	for range 2 {
		if o := await(t, done, "a loser"); !errors.Is(o.err, context.Canceled) {
			t.Fatalf("attempt %d's context: %v, want canceled", o.n, o.err)
		}
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("%d attempts, want 1 + MaxHedges = 3", got)
	}
	if s := e.Snapshot(); s.Hedges != 2 {
		t.Fatalf("snapshot %+v, want 2 hedges", s)
	}
}

func TestHedgeBudgetBoundsHedges(t *testing.T) {
	// A new budget is advanced one retry or hedge, and the first call's
	// share repays the advance: one hedge, then the budget is empty.
	e := mustExecutor(t, resilience.Policy{
		Hedge:  &resilience.Hedge{Delay: hedgeDelay, MaxHedges: 3},
		Budget: &resilience.Budget{Ratio: 1, MaxBalance: 1},
	})
	var n atomic.Int32
	v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (int, error) {
		i := int(n.Add(1))
		if i == 2 {
			// The hedge wins, once the budget has refused the next one.
			if !eventually(func() bool { return e.Snapshot().BudgetExhausted > 0 }) {
				return 0, errors.New("no hedge refused by the budget")
			}
			return i, nil
		}
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if err != nil || v != 2 {
		t.Fatalf("got %d, %v; want the hedge's result", v, err)
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("%d attempts, want 2 (the budget allows one hedge)", got)
	}
	if s := e.Snapshot(); s.Hedges != 1 || s.BudgetExhausted != 1 {
		t.Fatalf("snapshot %+v, want 1 hedge and 1 budget exhaustion", s)
	}
}

func TestHedgeNonRetryableFailureCancelsHedges(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}})
	var n atomic.Int32
	hedgeStarted := make(chan struct{})
	hedgeDone := make(chan error, 1)
	err := e.Run(context.Background(), func(ctx context.Context) error {
		if n.Add(1) == 1 {
			<-hedgeStarted
			return resilience.Permanent(errBoom)
		}
		close(hedgeStarted)
		<-ctx.Done()
		hedgeDone <- ctx.Err()
		return ctx.Err()
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("got %v, want the permanent failure", err)
	}
	if got := await(t, hedgeDone, "the hedge"); !errors.Is(got, context.Canceled) {
		t.Fatalf("hedge's context: %v, want canceled", got)
	}
}

func TestHedgeRetryableFailureWaitsForHedge(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}})
	var n atomic.Int32
	hedgeStarted, firstFailed := make(chan struct{}), make(chan struct{})
	v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (string, error) {
		if n.Add(1) == 1 {
			<-hedgeStarted
			defer close(firstFailed)
			return "", errBoom // retryable: the hedge may still succeed
		}
		close(hedgeStarted)
		<-firstFailed
		return "hedge", nil
	})
	if err != nil || v != "hedge" {
		t.Fatalf("got %q, %v; want the hedge's success", v, err)
	}
}

func TestHedgeRejectedHedgeDoesNotStart(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Hedge:    &resilience.Hedge{Delay: hedgeDelay},
		Bulkhead: &resilience.Bulkhead{MaxConcurrent: 1},
	})
	var n atomic.Int32
	v, err := resilience.Get(context.Background(), e, func(context.Context) (string, error) {
		n.Add(1)
		if !eventually(func() bool { return e.Snapshot().Rejected > 0 }) {
			return "", errors.New("no hedge rejected by the bulkhead")
		}
		return "first", nil
	})
	if err != nil || v != "first" {
		t.Fatalf("got %q, %v; want the first attempt's result", v, err)
	}
	if s := e.Snapshot(); n.Load() != 1 || s.Hedges != 0 || s.Rejected != 1 {
		t.Fatalf("%d attempts, snapshot %+v; want 1 attempt, 0 hedges, 1 rejection", n.Load(), s)
	}
}

// detached stands for a result that outlives its attempt, like an HTTP
// response whose body is read later.
type detached struct {
	n      int
	ctx    context.Context
	cancel context.CancelFunc
}

func TestHedgeDetachedKeepsWinnerContext(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}})
	var n atomic.Int32
	firstDone := make(chan error, 1)
	r, err := resilience.GetDetached(context.Background(), e, func(ctx context.Context, cancel context.CancelFunc) (detached, error) {
		i := int(n.Add(1))
		if i == 1 {
			<-ctx.Done()
			firstDone <- ctx.Err()
			return detached{}, ctx.Err()
		}
		return detached{i, ctx, cancel}, nil
	})
	if err != nil || r.n != 2 {
		t.Fatalf("got attempt %d, %v; want the hedge's result", r.n, err)
	}
	if got := await(t, firstDone, "the first attempt"); !errors.Is(got, context.Canceled) {
		t.Fatalf("loser's context: %v, want canceled", got)
	}
	if err := r.ctx.Err(); err != nil {
		t.Fatalf("winner's context %v before its owner cancelled it, want alive", err)
	}
	r.cancel()
	if r.ctx.Err() == nil {
		t.Fatal("winner's cancel did not cancel its context")
	}
}

func TestHedgeDetachedLateLoserIsCancelled(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}})
	var n atomic.Int32
	hedgeStarted, release := make(chan struct{}), make(chan struct{})
	loser := make(chan detached, 1)
	r, err := resilience.GetDetached(context.Background(), e, func(ctx context.Context, cancel context.CancelFunc) (detached, error) {
		i := int(n.Add(1))
		if i == 1 {
			<-hedgeStarted
			return detached{i, ctx, cancel}, nil // wins
		}
		close(hedgeStarted)
		<-release // ignores its context: succeeds after the winner
		d := detached{i, ctx, cancel}
		loser <- d
		return d, nil
	})
	if err != nil || r.n != 1 {
		t.Fatalf("got attempt %d, %v; want the first attempt's result", r.n, err)
	}
	defer r.cancel()
	close(release)
	l := await(t, loser, "the late loser")
	if l.ctx.Err() == nil {
		t.Fatal("the late loser's context is alive: its result would leak")
	}
	if err := r.ctx.Err(); err != nil {
		t.Fatalf("winner's context %v, want alive", err)
	}
}

func TestHedgeQuantileAfterWarmUp(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Quantile: 0.5}})
	ctx := context.Background()
	// 19 fast successes: still warming up.
	for range 19 {
		if err := e.Run(ctx, succeed); err != nil {
			t.Fatal(err)
		}
	}
	// The 20th call is slow, yet not hedged: the warm-up is not over.
	var n atomic.Int32
	err := e.Run(ctx, func(context.Context) error {
		n.Add(1)
		<-time.After(20 * time.Millisecond) // far beyond the fast calls' median; not a synchronisation
		return nil
	})
	if err != nil || n.Load() != 1 || e.Snapshot().Hedges != 0 {
		t.Fatalf("warm-up call: err %v, %d attempts, snapshot %+v; want 1 attempt and no hedge", err, n.Load(), e.Snapshot())
	}
	// Warm: a slow attempt is hedged after the median of recent successes.
	n.Store(0)
	v, err := resilience.Get(ctx, e, func(ctx context.Context) (string, error) {
		if n.Add(1) == 1 {
			<-ctx.Done()
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

func TestRetryWrapsHedgedGroups(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{
		Retry: &resilience.Retry{MaxAttempts: 3},
		Hedge: &resilience.Hedge{Delay: hedgeDelay},
	})
	var n atomic.Int32
	v, err := resilience.Get(context.Background(), e, func(ctx context.Context) (string, error) {
		switch n.Add(1) {
		case 1:
			return "", errBoom // the first group fails at once: retried, not hedged
		case 2:
			<-ctx.Done() // the retry's first attempt is slow: hedged
			return "", ctx.Err()
		default:
			return "hedge", nil
		}
	})
	if err != nil || v != "hedge" {
		t.Fatalf("got %q, %v; want the retry's hedge to win", v, err)
	}
	if s := e.Snapshot(); n.Load() != 3 || s.Retries != 1 || s.Hedges != 1 {
		t.Fatalf("%d attempts, snapshot %+v; want 3 attempts, 1 retry, 1 hedge", n.Load(), s)
	}
}

func TestHedgeCallerCancellation(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Hedge: &resilience.Hedge{Delay: hedgeDelay}, Retry: &resilience.Retry{MaxAttempts: 3}})
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	err := e.Run(ctx, func(ctx context.Context) error {
		if n.Add(1) == 2 {
			cancel() // the caller gives up while both attempts run
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("%d attempts, want 2 (no retry after the caller gave up)", got)
	}
}

type ctxKey struct{}

func TestHedgedAttemptTimeout(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Timeout: 5 * time.Millisecond, Hedge: &resilience.Hedge{Delay: time.Minute}})
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel()
	before := time.Now()
	var attemptCtx, child, grandchild context.Context
	afterFunc := make(chan struct{})
	err := e.Run(parent, func(ctx context.Context) error {
		attemptCtx = ctx
		context.AfterFunc(ctx, func() { close(afterFunc) })
		stopped := context.AfterFunc(ctx, func() { panic("a stopped AfterFunc ran") })
		if !stopped() {
			return resilience.Permanent(errors.New("AfterFunc could not be stopped"))
		}
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(before) || dl.After(time.Now().Add(5*time.Millisecond)) {
			return resilience.Permanent(fmt.Errorf("attempt deadline %v, %v; want the policy's timeout from now", dl, ok))
		}
		if ctx.Value(ctxKey{}) != "v" {
			return resilience.Permanent(errors.New("the caller's values are lost"))
		}
		var stop context.CancelFunc
		child, stop = context.WithCancel(ctx)
		defer stop()
		grandchild, stop = context.WithTimeout(child, time.Hour)
		defer stop()
		<-grandchild.Done() // the attempt's deadline reaches contexts derived from it
		return grandchild.Err()
	})
	if !errors.Is(err, resilience.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrTimeout wrapping context.DeadlineExceeded", err)
	}
	for _, c := range []context.Context{attemptCtx, child, grandchild} {
		select {
		case <-c.Done():
		default:
			t.Fatal("Done is not closed after the deadline")
		}
		if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(c), context.DeadlineExceeded) {
			t.Fatalf("err %v, cause %v; want context.DeadlineExceeded", c.Err(), context.Cause(c))
		}
	}
	await(t, afterFunc, "context.AfterFunc on the attempt's context")
	if parent.Err() != nil {
		t.Fatal("the attempt's timeout cancelled the caller's context")
	}
}

func TestHedgedAttemptFollowsTheCaller(t *testing.T) {
	e := mustExecutor(t, resilience.Policy{Timeout: time.Hour, Hedge: &resilience.Hedge{Delay: time.Minute}})
	t.Run("cancellation", func(t *testing.T) {
		parent, cancel := context.WithCancelCause(context.Background())
		cause := errors.New("caller gave up")
		err := e.Run(parent, func(ctx context.Context) error {
			child, stop := context.WithCancel(ctx)
			defer stop()
			cancel(cause)
			<-child.Done()
			<-ctx.Done()
			for _, c := range []context.Context{ctx, child} {
				if c := context.Cause(c); !errors.Is(c, cause) {
					return resilience.Permanent(fmt.Errorf("cause %v, want the caller's", c))
				}
			}
			return child.Err()
		})
		if !errors.Is(err, context.Canceled) || errors.Is(err, resilience.ErrTimeout) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("own cancel", func(t *testing.T) {
		var attemptCtx context.Context
		if err := e.Run(context.Background(), func(ctx context.Context) error { attemptCtx = ctx; return nil }); err != nil {
			t.Fatal(err)
		}
		// Run cancels the attempt's context once the function returned.
		if !errors.Is(attemptCtx.Err(), context.Canceled) || !errors.Is(context.Cause(attemptCtx), context.Canceled) {
			t.Fatalf("err %v, cause %v; want context.Canceled", attemptCtx.Err(), context.Cause(attemptCtx))
		}
	})
	t.Run("earlier deadline", func(t *testing.T) {
		parent, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		want, _ := parent.Deadline()
		err := e.Run(parent, func(ctx context.Context) error {
			if got, ok := ctx.Deadline(); !ok || !got.Equal(want) {
				return fmt.Errorf("attempt deadline %v, want the caller's %v", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// An attempt that ended by itself keeps its own cause when the caller's
// context is cancelled with another one later, as context.WithTimeout's
// context would: a detached result's context, or a log line written after
// the call, reports why the attempt ended, not why the caller did.
func TestAttemptKeepsItsOwnCause(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    resilience.Policy
	}{
		{"timeout", resilience.Policy{Timeout: 5 * time.Millisecond}},
		{"timeout and hedge", resilience.Policy{Timeout: 5 * time.Millisecond, Hedge: &resilience.Hedge{Delay: time.Minute}}},
		{"hedge", resilience.Policy{Hedge: &resilience.Hedge{Delay: time.Minute}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustExecutor(t, tc.p)
			for _, expire := range []bool{false, true} {
				if expire && tc.p.Timeout == 0 {
					continue
				}
				want := context.Canceled
				if expire {
					want = context.DeadlineExceeded
				}
				parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "v"))
				var attemptCtx, child context.Context
				var stop context.CancelFunc
				_ = e.Run(parent, func(ctx context.Context) error {
					attemptCtx = ctx
					child, stop = context.WithCancel(ctx) // ended with the attempt
					if expire {
						<-child.Done() // the deadline reaches the derived context
						return ctx.Err()
					}
					return nil
				})
				cancel(errors.New("caller gave up later"))
				stop()
				for _, c := range []context.Context{attemptCtx, child} {
					if !errors.Is(c.Err(), want) || context.Cause(c) != want {
						t.Errorf("expire=%v: err %v, cause %v; want %v", expire, c.Err(), context.Cause(c), want)
					}
					if c.Value(ctxKey{}) != "v" {
						t.Errorf("expire=%v: the caller's values are lost once the attempt ended", expire)
					}
				}
			}
		})
	}
}

func TestRoundTripperHedges(t *testing.T) {
	var calls atomic.Int32
	hung := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			<-r.Context().Done() // the first request hangs until the client gives up on it
			hung <- r.Context().Err()
			return
		}
		_, _ = w.Write([]byte("hedge got " + string(body)))
	}))
	defer srv.Close()
	c := newClient(t, mustExecutor(t, resilience.Policy{Timeout: time.Minute, Hedge: &resilience.Hedge{Delay: hedgeDelay}}))
	resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // the winner's context is still alive
	if err != nil || string(body) != "hedge got order-1" {
		t.Fatalf("body %q, %v; want the hedge's answer", body, err)
	}
	await(t, hung, "the server to see the first request cancelled")
}
