package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// frozenDeadline is each call's deadline in the frozen-instance tests.
const frozenDeadline = 250 * time.Millisecond

// frozenFor is how long the load goes on after the freeze: long enough
// for the five timed-out probes that eject the frozen instance, each
// ended by the stall watch after half the call's deadline and each
// further apart than the last, to end more than a second before the load
// does.
const frozenFor = 4500 * time.Millisecond

// frozenPolicy is the README's policy: a one-second attempt timeout,
// three attempts and a retry budget. With the call's 250ms deadline, an
// attempt stuck on a frozen instance would end only with the call; the
// balancer's stall watch ends it at half its time (125ms) once its
// instance has gone quiet while the others answer, and the retry, on
// another instance, has the remaining 125ms.
var frozenPolicy = resilience.Policy{
	Timeout: time.Second,
	Retry:   &resilience.Retry{MaxAttempts: 3},
	Budget:  &resilience.Budget{},
}

// frozenCut is when the stall watch first looks at an attempt of a call
// with frozenDeadline.
const frozenCut = frozenDeadline / 2

// frozenFleet starts five backend processes of kind, registered in a new
// registry, and returns the last as the one to freeze.
func frozenFleet(t *testing.T, kind string) (*vitamintest.Registry, *procBackend) {
	reg := newRegistry(t)
	var victim *procBackend
	for i := range 5 {
		victim = startProcBackend(t, kind, "f"+itoa(i))
		register(t, reg, victim.instance(svc, nil))
	}
	return reg, victim
}

// TestGRPCFrozenInstance: five instances, each its own process; one is
// frozen (SIGSTOP: connected, never answers) while 8 goroutines call with
// a 250ms deadline under frozenPolicy.
func TestGRPCFrozenInstance(t *testing.T) {
	reg, victim := frozenFleet(t, "grpc")
	v := &victimAttempts{}
	var logs vitamintest.Buffer
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing(),
		client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		client.WithDialOptions(grpc.WithStatsHandler(&frozenWatch{addr: victim.instance(svc, nil).Endpoint(), v: v})),
		client.WithPolicies(policies(t, frozenPolicy)))
	calls := frozenLoad(victim, v, func(ctx context.Context) error { return check(ctx, conn) })
	checkFrozen(t, calls, v, &logs)
}

// TestHTTPFrozenInstance is TestGRPCFrozenInstance over HTTP.
func TestHTTPFrozenInstance(t *testing.T) {
	reg, victim := frozenFleet(t, "http")
	v := &victimAttempts{}
	var logs vitamintest.Buffer
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing(),
		client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		client.WithBaseTransport(&frozenTransport{base: http.DefaultTransport.(*http.Transport).Clone(), addr: victim.instance(svc, nil).Endpoint(), v: v}),
		client.WithPolicies(policies(t, frozenPolicy)))
	calls := frozenLoad(victim, v, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/x", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	checkFrozen(t, calls, v, &logs)
}

// frozenCall is one call made after the freeze.
type frozenCall struct {
	took    time.Duration
	err     error
	touched bool // an attempt went to the frozen instance
}

// touchedKey marks a call's context; its value, an *atomic.Bool, is set
// when an attempt of the call goes to the frozen instance.
type touchedKey struct{}

// frozenLoad runs call from 8 goroutines, each call with frozenDeadline,
// freezes victim after the first 1,000 calls and goes on for frozenFor. It
// returns the calls made after the freeze.
func frozenLoad(victim *procBackend, v *victimAttempts, call func(ctx context.Context) error) []frozenCall {
	const workers, before = 8, 1000
	var (
		next  atomic.Int64
		mu    sync.Mutex
		after []frozenCall
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			var mine []frozenCall
			defer func() {
				mu.Lock()
				after = append(after, mine...)
				mu.Unlock()
			}()
			for {
				i := next.Add(1)
				if i == before {
					victim.Freeze()
					v.frozen.Store(time.Now().UnixNano())
				}
				if f := v.frozen.Load(); f != 0 && time.Since(time.Unix(0, f)) > frozenFor {
					return
				}
				touched := new(atomic.Bool)
				ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), touchedKey{}, touched), frozenDeadline)
				s := time.Now()
				err := call(ctx)
				d := time.Since(s)
				cancel()
				if i > before {
					mine = append(mine, frozenCall{took: d, err: err, touched: touched.Load()})
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(after, func(a, b frozenCall) int { return int(a.took - b.took) })
	return after
}

// checkFrozen asserts what the frozen-instance tests promise and reports
// the figures. No call that went to the frozen instance failed, and at
// most one waited out its deadline (with frozenPolicy none should). After
// the first attempt to it timed out, the balancer sent it only probes —
// each a call whose attempt the stall watch ends after 125ms and retries —
// until it was ejected (five timeouts in a row), and none in the last
// second of the load. Calls that never went to the frozen instance can
// only fail because this machine stalled for longer than their deadline
// allows; they are reported, and must stay rare.
func checkFrozen(t *testing.T, calls []frozenCall, v *victimAttempts, logs *vitamintest.Buffer) {
	t.Helper()
	defer func() {
		if t.Failed() {
			v.mu.Lock()
			t.Logf("attempts to the frozen instance, from the freeze on:\n%s\nthe client's log:\n%s", strings.Join(v.events, "\n"), logs.String())
			v.mu.Unlock()
		}
	}()
	if len(calls) < 1000 {
		t.Fatalf("only %d calls in the %v after the freeze", len(calls), frozenFor)
	}
	var touched, failedTouched, failedOther, waited, timedOut int
	var firstErr error
	for _, c := range calls {
		if c.touched {
			touched++
			if c.took >= frozenDeadline-10*time.Millisecond {
				waited++
			}
		}
		if c.took >= frozenCut {
			timedOut++
		}
		if c.err != nil {
			if firstErr == nil {
				firstErr = c.err
			}
			if c.touched {
				failedTouched++
			} else {
				failedOther++
			}
		}
	}
	pct := func(q float64) time.Duration { return calls[int(float64(len(calls))*q)].took.Round(time.Millisecond) }
	v.mu.Lock()
	sent, probes, last := v.sent, v.probes, v.last
	v.mu.Unlock()
	t.Logf("%d calls after the freeze, %d of them to the frozen instance: %d of those failed, %d waited out the %v deadline; "+
		"%d other calls failed; %d calls took more than the stall watch's first look at %v; p99 %v, p99.9 %v, max %v; "+
		"attempts to the frozen instance: %d sent after the freeze, %d stuck, %d sent after the first timeout, the last %v after the freeze",
		len(calls), touched, failedTouched, waited, frozenDeadline, failedOther, timedOut, frozenCut,
		pct(0.99), pct(0.999), calls[len(calls)-1].took.Round(time.Millisecond),
		sent, v.stuck.Load(), probes, last.Round(time.Millisecond))
	if failedTouched > 0 {
		t.Errorf("%d calls that went to the frozen instance failed; first failure: %v", failedTouched, firstErr)
	}
	if failedOther*200 > len(calls) {
		t.Errorf("%d of %d calls that never went to the frozen instance failed; first failure: %v", failedOther, len(calls), firstErr)
	}
	if waited > 1 {
		t.Errorf("%d calls waited out the %v deadline, want at most 1", waited, frozenDeadline)
	}
	if probes > 8 {
		t.Errorf("%d attempts went to the frozen instance after the first timed out, want at most 8 probes", probes)
	}
	if last > frozenFor-time.Second {
		t.Errorf("an attempt went to the frozen instance %v after it froze, want none after %v", last, frozenFor-time.Second)
	}
}

// victimAttempts follows the attempts sent to the frozen instance after
// it froze.
type victimAttempts struct {
	frozen atomic.Int64 // unix nanoseconds of the freeze; 0 before
	stuck  atomic.Int64 // attempts that ended without an answer after the freeze

	mu       sync.Mutex
	sent     int           // attempts sent after the freeze
	probes   int           // attempts sent after the first one timed out
	last     time.Duration // from the freeze to the last attempt sent
	timedOut bool
	events   []string // for the log of a failed test
}

// sending records an attempt of the call of ctx to the frozen instance.
func (v *victimAttempts) sending(ctx context.Context) {
	if touched, ok := ctx.Value(touchedKey{}).(*atomic.Bool); ok {
		touched.Store(true)
	}
	f := v.frozen.Load()
	if f == 0 {
		return
	}
	since := time.Duration(time.Now().UnixNano() - f)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sent++
	v.last = since
	if v.timedOut {
		v.probes++
	}
	v.events = append(v.events, fmt.Sprintf("%v: sent", since.Round(time.Millisecond)))
}

// failed records an attempt to the frozen instance that ended without an
// answer.
func (v *victimAttempts) failed() {
	f := v.frozen.Load()
	if f == 0 {
		return
	}
	v.stuck.Add(1)
	since := time.Duration(time.Now().UnixNano() - f)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.timedOut = true
	v.events = append(v.events, fmt.Sprintf("%v: ended without an answer", since.Round(time.Millisecond)))
}

// frozenWatch tells victimAttempts about the gRPC attempts sent to addr
// (a stats handler sees each attempt's peer and end).
type frozenWatch struct {
	addr string
	v    *victimAttempts
}

type attemptKey struct{}

type attemptTag struct{ toVictim atomic.Bool }

func (f *frozenWatch) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, attemptKey{}, &attemptTag{})
}

func (f *frozenWatch) HandleRPC(ctx context.Context, s stats.RPCStats) {
	tag, _ := ctx.Value(attemptKey{}).(*attemptTag)
	if tag == nil {
		return
	}
	switch s := s.(type) {
	case *stats.OutHeader:
		if s.Client && s.RemoteAddr != nil && s.RemoteAddr.String() == f.addr {
			tag.toVictim.Store(true)
			f.v.sending(ctx)
		}
	case *stats.End:
		if s.Client && tag.toVictim.Load() && s.Error != nil {
			f.v.failed()
		}
	}
}

func (f *frozenWatch) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (f *frozenWatch) HandleConn(context.Context, stats.ConnStats)                       {}

// frozenTransport tells victimAttempts about the HTTP attempts sent to
// addr.
type frozenTransport struct {
	base *http.Transport
	addr string
	v    *victimAttempts
}

func (f *frozenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	victim := r.URL.Host == f.addr
	if victim {
		f.v.sending(r.Context())
	}
	resp, err := f.base.RoundTrip(r)
	if victim && err != nil {
		f.v.failed()
	}
	return resp, err
}

// CloseIdleConnections lets the client's Close reach the base transport.
func (f *frozenTransport) CloseIdleConnections() { f.base.CloseIdleConnections() }
