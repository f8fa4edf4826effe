package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// readmePolicy is the policy of the README's quick start.
var readmePolicy = resilience.Policy{
	Timeout: time.Second,
	Retry:   &resilience.Retry{MaxAttempts: 3},
	Budget:  &resilience.Budget{},
}

// soakEnv, set to a number, runs each case of the fault tests that many
// times in a row instead of their default (20 kills, 1 freeze).
const soakEnv = "VITAMIN_FAULT_REPS"

func faultReps(t *testing.T, def int) int {
	if s := os.Getenv(soakEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", soakEnv, s)
		}
		return n
	}
	return def
}

// fleet is three backend processes registered as svc. A fault test hurts
// one of them per repetition and replaces it for the next.
type fleet struct {
	t    *testing.T
	kind string
	reg  *vitamintest.Registry
	n    int
	bs   []*procBackend
	regs []discovery.Registered
}

func newFleet(t *testing.T, kind string, size int) *fleet {
	f := &fleet{t: t, kind: kind, reg: newRegistry(t)}
	for range size {
		f.add()
	}
	return f
}

func (f *fleet) add() {
	f.n++
	b := startProcBackend(f.t, f.kind, fmt.Sprintf("%s-%d", f.kind, f.n))
	f.bs = append(f.bs, b)
	f.regs = append(f.regs, register(f.t, f.reg, b.instance(svc, nil)))
}

// replace deregisters and kills backend i and starts a new one.
func (f *fleet) replace(i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = f.regs[i].Deregister(ctx)
	f.bs[i].Kill()
	f.bs = append(f.bs[:i], f.bs[i+1:]...)
	f.regs = append(f.regs[:i], f.regs[i+1:]...)
	f.add()
}

// caller makes one call to svc; newCaller builds one for a fleet.
type caller struct {
	call  func(ctx context.Context) error
	close func()
	pol   *resilience.Registry
}

// retries returns the retries the caller's policy made and refused.
func (c caller) retries() (made, refused uint64) {
	s := c.pol.For(svc, "").Snapshot()
	return s.Retries, s.BudgetExhausted
}

func grpcCaller(t *testing.T, w discovery.Watcher, p resilience.Policy) caller {
	pol := policies(t, p)
	conn, err := client.NewGRPC(context.Background(), svc, client.Config{}, client.WithWatcher(w),
		client.WithoutTracing(), client.WithPolicies(pol))
	if err != nil {
		t.Fatal(err)
	}
	return caller{call: func(ctx context.Context) error { return check(ctx, conn) }, close: func() { _ = conn.Close() }, pol: pol}
}

func httpCaller(t *testing.T, w discovery.Watcher, p resilience.Policy) caller {
	pol := policies(t, p)
	hc, err := client.NewHTTP(svc, client.Config{}, client.WithWatcher(w),
		client.WithoutTracing(), client.WithPolicies(pol))
	if err != nil {
		t.Fatal(err)
	}
	return caller{call: func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+svc+"/x", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}, close: func() { _ = client.CloseHTTP(hc) }, pol: pol}
}

// faultRun is what one repetition of a fault under load saw.
type faultRun struct {
	calls, failed int64
	first         error
}

// underFault calls c from workers goroutines: before calls have
// succeeded, it hurts the fleet with fault (which returns when the fault
// is in place), and it stops once after calls more have ended after the
// fault. Each call has a 10 s deadline of its own, far beyond the policy's.
func underFault(c caller, workers, before, after int, fault func()) faultRun {
	var done, failed atomic.Int64
	var faulted atomic.Int64 // calls ended when the fault was in place; 0 before
	var first atomic.Pointer[error]
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.call(ctx)
				cancel()
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, &err)
				}
				n := done.Add(1)
				if n == int64(before) {
					go func() {
						fault()
						faulted.Store(max(done.Load(), 1))
					}()
				}
				if f := faulted.Load(); f > 0 && n >= f+int64(after) {
					once.Do(func() { close(stop) })
				}
			}
		})
	}
	wg.Wait()
	r := faultRun{calls: done.Load(), failed: failed.Load()}
	if p := first.Load(); p != nil {
		r.first = *p
	}
	return r
}

// TestKillUnderLoad kills one of three backend processes (SIGKILL) while
// 16 or 32 goroutines call through the README's policy: no call fails.
// Each case runs 20 times in a row (VITAMIN_FAULT_REPS sets another
// number), about a second per case and repetition under -race.
func TestKillUnderLoad(t *testing.T) {
	underFaults(t, faultReps(t, 20), readmePolicy, (*procBackend).Kill)
}

// TestFreezeUnderLoad freezes one of three backend processes (SIGSTOP) for
// 5 s while 16 or 32 goroutines call through the README's policy with a
// 200 ms timeout per attempt, then thaws it: no call fails. Attempts to
// the frozen instance time out — real failures, retried on the budget.
// VITAMIN_FAULT_REPS sets the repetitions per case (default 1).
func TestFreezeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("5 s per case")
	}
	p := readmePolicy
	p.Timeout = 200 * time.Millisecond
	underFaults(t, faultReps(t, 1), p, func(victim *procBackend) {
		victim.Freeze()
		defer victim.Thaw()
		time.Sleep(5 * time.Second) // how long the fault lasts
	})
}

// underFaults runs, for gRPC and HTTP and for 16 and 32 callers, reps
// repetitions of: warm up a fresh client with policy p over three backend
// processes, call through it while fault strikes one of them, and fail the
// test for every call that failed. The struck process is replaced after
// each repetition.
func underFaults(t *testing.T, reps int, p resilience.Policy, fault func(victim *procBackend)) {
	for _, kind := range []string{"grpc", "http"} {
		for _, workers := range []int{16, 32} {
			t.Run(fmt.Sprintf("%s/%d", kind, workers), func(t *testing.T) {
				f := newFleet(t, kind, 3)
				newCaller := grpcCaller
				if kind == "http" {
					newCaller = httpCaller
				}
				var total, failed int64
				var made, refused uint64
				for rep := range reps {
					c := newCaller(t, f.reg, p)
					// Warm up: every instance has a connection and an estimate.
					underFault(c, workers, 1, 1, func() {})
					victim := f.bs[rep%len(f.bs)]
					r := underFault(c, workers, 200, 300, func() { fault(victim) })
					c.close()
					m, x := c.retries()
					made, refused = made+m, refused+x
					total += r.calls
					failed += r.failed
					if r.failed > 0 {
						t.Errorf("repetition %d: %d of %d calls failed; first: %v", rep, r.failed, r.calls, r.first)
					}
					f.replace(rep % len(f.bs))
				}
				t.Logf("%d repetitions, %d calls, %d failed; the policy retried %d and the budget refused %d", reps, total, failed, made, refused)
			})
		}
	}
}
