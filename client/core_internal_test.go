package client

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func testCore(t testing.TB, b Balancing, n int, meta func(i int) map[string]string) (*core, []discovery.Instance) {
	t.Helper()
	b, err := b.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := newCore("orders", b, false, nil, nil)
	t.Cleanup(c.close)
	ins := make([]discovery.Instance, n)
	for i := range ins {
		ins[i] = discovery.Instance{ID: fmt.Sprintf("i%03d", i), Service: "orders", Address: "10.0.0.1", Port: 1000 + i}
		if meta != nil {
			ins[i].Meta = meta(i)
		}
	}
	c.update(ins)
	return c, ins
}

func TestRetryAvoidsTriedInstances(t *testing.T) {
	for _, alg := range []Algorithm{PowerOfTwo, RoundRobin} {
		t.Run(string(alg), func(t *testing.T) {
			c, _ := testCore(t, Balancing{Algorithm: alg}, 3, nil)
			for range 1000 {
				cs := &callState{}
				seen := map[*endpoint]bool{}
				for range 3 {
					m, err := c.pick(cs)
					if err != nil {
						t.Fatal(err)
					}
					if seen[m.ep] {
						t.Fatalf("attempt went to %s again while untried instances were left", m.ep.addr)
					}
					seen[m.ep] = true
				}
			}
		})
	}
}

func TestEjectionCapAndExpiry(t *testing.T) {
	c, _ := testCore(t, Balancing{Outlier: Outlier{Consecutive: 2, BaseEjection: 20 * time.Millisecond, MaxEjectedShare: 0.5}}, 4, nil)
	eps := c.set.Load().all
	fail := func(e *endpoint) {
		for range 2 {
			c.finish(e, c.start(e), outcomeFailure)
		}
	}
	fail(eps[0].ep)
	fail(eps[1].ep)
	fail(eps[2].ep) // over the cap of 2 of 4
	if got := len(c.set.Load().all); got != 2 {
		t.Fatalf("%d eligible instances after three outliers with a cap of half of 4, want 2", got)
	}
	for range 200 {
		m, _ := c.pick(nil)
		if m.ep == eps[0].ep || m.ep == eps[1].ep {
			t.Fatalf("picked ejected instance %s", m.ep.addr)
		}
	}
	// The ejection ends by itself.
	vitamintest.Eventually(t, 5*time.Second, func() error {
		if n := len(c.set.Load().all); n != 4 {
			return fmt.Errorf("%d of 4 instances eligible; the ejected ones did not come back", n)
		}
		return nil
	})
	// A second ejection lasts longer.
	fail(eps[0].ep)
	c.mu.Lock()
	n := eps[0].ep.ejections
	c.mu.Unlock()
	if n != 2 {
		t.Fatalf("ejections = %d, want 2", n)
	}
}

func TestPanicThreshold(t *testing.T) {
	c, _ := testCore(t, Balancing{Outlier: Outlier{Consecutive: 1, BaseEjection: time.Minute, MaxEjectedShare: 1, PanicThreshold: 0.5}}, 4, nil)
	eps := c.set.Load().all
	c.finish(eps[0].ep, c.start(eps[0].ep), outcomeFailure)
	c.finish(eps[1].ep, c.start(eps[1].ep), outcomeFailure)
	if got := len(c.set.Load().all); got != 2 {
		t.Fatalf("%d eligible, want 2", got)
	}
	c.finish(eps[2].ep, c.start(eps[2].ep), outcomeFailure)
	if got := len(c.set.Load().all); got != 4 {
		t.Fatalf("below the panic threshold: %d eligible, want all 4", got)
	}
}

func TestStickyIsStable(t *testing.T) {
	meta := func(i int) map[string]string { return map[string]string{"version": []string{"a", "b"}[i%2]} }
	c, ins := testCore(t, Balancing{Sticky: &Sticky{}}, 6, meta)
	groupOf := func(key string) string {
		m, err := c.pick(&callState{sticky: key})
		if err != nil {
			t.Fatal(err)
		}
		return m.ep.inst.Meta["version"]
	}
	want := map[string]string{}
	for k := range 200 {
		want[fmt.Sprint("k", k)] = groupOf(fmt.Sprint("k", k))
	}
	// Membership changes within groups keep assignments.
	c.update(ins[:4])
	for k, g := range want {
		if got := groupOf(k); got != g {
			t.Fatalf("key %s moved from %s to %s", k, g, got)
		}
	}
}

func TestFastFailuresRepel(t *testing.T) {
	c, _ := testCore(t, Balancing{Outlier: Outlier{Disabled: true}}, 2, nil)
	eps := c.set.Load().all
	good, bad := eps[0].ep, eps[1].ep
	for range 10 {
		c.finish(good, c.start(good)-int64(time.Millisecond), outcomeSuccess)
		c.finish(bad, c.start(bad), outcomeFailure) // fails in no time
	}
	n := 0
	for range 1000 {
		if m, _ := c.pick(nil); m.ep == bad {
			n++
		}
	}
	if n > 10 {
		t.Fatalf("an instance that fails fast got %d of 1000 picks", n)
	}
}

// BenchmarkPick measures one pick (the budget: ≤ 100 ns, 0 allocs at 100
// instances); BenchmarkPickAndRecord adds recording the call's latency.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			c, _ := testCore(b, Balancing{}, n, nil)
			for _, m := range c.set.Load().all {
				c.finish(m.ep, c.start(m.ep)-int64(time.Millisecond), outcomeSuccess)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = c.pick(nil)
			}
		})
	}
}

func BenchmarkPickAndRecord(b *testing.B) {
	c, _ := testCore(b, Balancing{}, 100, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m, _ := c.pick(nil)
			c.finish(m.ep, c.start(m.ep), outcomeSuccess)
		}
	})
}

func TestNewInstanceIsNotStarved(t *testing.T) {
	c, ins := testCore(t, Balancing{Outlier: Outlier{Disabled: true}}, 2, nil)
	eps := c.set.Load().all
	for range 20 {
		c.finish(eps[0].ep, c.start(eps[0].ep)-int64(time.Millisecond), outcomeSuccess)
		c.finish(eps[1].ep, c.start(eps[1].ep), outcomeFailure) // penalised peer
	}
	// A new instance starts at the typical latency of successful calls,
	// not at an average that includes the failing peer's penalty.
	added := discovery.Instance{ID: "i999", Service: "orders", Address: "10.0.0.2", Port: 2000}
	c.update(append(ins, added))
	n := 0
	for range 300 {
		if m, _ := c.pick(nil); m.ep.addr == added.Endpoint() {
			n++
		}
	}
	if n < 50 {
		t.Fatalf("the new instance got %d of 300 picks", n)
	}
}

// elapse makes d pass for c's instances: their last sample, answer and
// timeout move d into the past.
func elapse(c *core, d time.Duration) {
	c.mu.Lock()
	for _, e := range c.eps {
		e.stamp.Add(-int64(d))
		e.answered.Add(-int64(d))
		e.timedOut.Add(-int64(d))
	}
	c.mu.Unlock()
	c.clock.Store(c.now())
}

// answer records a successful call to e that took rtt.
func answer(c *core, e *endpoint, rtt time.Duration) {
	c.finish(e, c.start(e)-int64(rtt), outcomeSuccess)
}

// share returns how many of n picks went to e. The picks see the core
// clock of the last start, finish or elapse, so the time the test takes
// does not count.
func share(c *core, e *endpoint, n int) int {
	got := 0
	for range n {
		if m, _ := c.pick(nil); m.ep == e {
			got++
		}
	}
	return got
}

// warmPair returns a core over two instances without outlier ejection,
// each having answered 20 calls in 1ms.
func warmPair(t *testing.T) (*core, *endpoint, *endpoint) {
	t.Helper()
	c, _ := testCore(t, Balancing{Outlier: Outlier{Disabled: true}}, 2, nil)
	eps := c.set.Load().all
	a, b := eps[0].ep, eps[1].ep
	for range 20 {
		answer(c, a, time.Millisecond)
		answer(c, b, time.Millisecond)
	}
	return c, a, b
}

func TestOneSlowSampleIsForgotten(t *testing.T) {
	c, a, b := warmPair(t)
	answer(c, b, 200*time.Millisecond) // a pause, a cold connection
	if n := share(c, b, 100); n != 0 {
		t.Fatalf("right after its slow sample, b got %d of 100 picks", n)
	}
	// a keeps answering in 1ms; b gets no call. After some forty typical
	// calls' time, b is as cheap as a again (the decay time of 10s would
	// keep it expensive for a thousand times longer).
	for range 40 {
		elapse(c, time.Millisecond)
		answer(c, a, time.Millisecond)
	}
	if n := share(c, b, 100); n == 0 {
		t.Fatalf("after 40ms without calls, one slow sample still keeps b from every pick: estimate %v", time.Duration(math.Float64frombits(b.ewma.Load())))
	}
}

func TestStillSlowIsProbedLessOften(t *testing.T) {
	c, a, slow := warmPair(t)
	// Each time slow is tried again after it was left alone, it is still
	// 10 times slower: from the second such probe on, each one doubles
	// the time it is left alone.
	scale := func() float64 { return math.Float64frombits(slow.scale.Load()) }
	want := 1.0
	for i := range 6 {
		for range 20 {
			answer(c, a, time.Millisecond)
		}
		elapse(c, 10*time.Second) // long enough to be a probe
		answer(c, slow, 10*time.Millisecond)
		if i > 0 {
			want /= 2
		}
		if got := scale(); got != want {
			t.Fatalf("after %d slow probes the decay scale is %v, want %v", i+1, got, want)
		}
	}
	// One answer in the typical time starts over.
	answer(c, slow, time.Millisecond)
	if got := scale(); got != 1 {
		t.Fatalf("after a fast answer the decay scale is %v, want 1", got)
	}
}

func TestStuckInstanceIsAvoided(t *testing.T) {
	c, a, stuck := warmPair(t)
	c.start(stuck) // never answered
	c.start(a)     // in flight too, for as long
	c.clock.Store(c.now())
	r := c.rates()
	if cs, ca := stuck.cost(c.clock.Load(), r), a.cost(c.clock.Load(), r); cs > 1.1*ca {
		t.Fatalf("with one call just started on each, costs %v and %v: a call in flight for less than the typical latency is no sign", cs, ca)
	}
	// 20ms later a has answered other calls; stuck has answered nothing
	// while its call waits.
	elapse(c, 20*time.Millisecond)
	answer(c, a, time.Millisecond)
	if n := share(c, stuck, 100); n != 0 {
		t.Fatalf("an instance silent for 20 typical latencies with a call in flight got %d of 100 picks", n)
	}
}

func TestTimeoutsEject(t *testing.T) {
	c, _ := testCore(t, Balancing{Outlier: Outlier{Consecutive: 3, BaseEjection: time.Minute}}, 4, nil)
	eps := c.set.Load().all
	for _, m := range eps {
		answer(c, m.ep, time.Millisecond)
	}
	// timeouts ends n calls to e that started together d ago and got no
	// answer, some time after the previous round.
	timeouts := func(e *endpoint, n int, d time.Duration) {
		elapse(c, 2*d)
		s := c.now() - int64(d)
		for range n {
			c.start(e)
		}
		e.answered.Store(s) // its last sign of life: when they started
		for range n {
			c.finish(e, s, outcomeSlow)
		}
	}
	eligible := func(e *endpoint) bool {
		for _, m := range c.set.Load().all {
			if m.ep == e {
				return true
			}
		}
		return false
	}
	busy, paused, stuck := eps[0].ep, eps[1].ep, eps[2].ep
	// An instance that times out calls while it answers others is slow
	// at those, not stuck.
	for range 3 {
		elapse(c, 200*time.Millisecond)
		s := c.start(busy) - int64(100*time.Millisecond)
		answer(c, busy, time.Millisecond)
		c.finish(busy, s, outcomeSlow)
	}
	// Calls in flight together that all time out count once: so does a
	// pause of this process, which times out calls to every instance.
	timeouts(paused, 10, 100*time.Millisecond)
	answer(c, paused, time.Millisecond)
	timeouts(paused, 10, 100*time.Millisecond)
	// A deadline that ran out before a typical call's time is no verdict.
	for range 3 {
		timeouts(stuck, 1, time.Microsecond)
	}
	for _, e := range []*endpoint{busy, paused, stuck} {
		if !eligible(e) {
			t.Fatalf("%s was ejected for timeouts that say nothing of it", e.inst.ID)
		}
	}
	// A stuck instance: the calls in flight when it froze, then one
	// probe after another, all unanswered.
	timeouts(stuck, 3, 100*time.Millisecond)
	timeouts(stuck, 1, 100*time.Millisecond)
	if !eligible(stuck) {
		t.Fatal("ejected after two rounds of timeouts, with Consecutive 3")
	}
	timeouts(stuck, 1, 100*time.Millisecond)
	if eligible(stuck) {
		t.Fatal("an instance that answered nothing to three rounds of calls was not ejected")
	}
	// The typical latency learnt nothing from the timeouts.
	if typ := time.Duration(math.Float64frombits(c.typical.Load())); typ > 2*time.Millisecond {
		t.Fatalf("typical latency %v after timeouts, want about 1ms", typ)
	}
}

func TestNothingSentIsNoSample(t *testing.T) {
	if o := doneOutcome(balancer.DoneInfo{}, false); o != outcomeIgnore {
		t.Fatalf("an empty DoneInfo (gRPC picks again: the transport was not ready) counts as %d, want ignored", o)
	}
	if o := doneOutcome(balancer.DoneInfo{Err: status.Error(codes.DeadlineExceeded, "x")}, false); o != outcomeIgnore {
		t.Fatalf("a deadline before anything was sent counts as %d, want ignored", o)
	}
	if o := doneOutcome(balancer.DoneInfo{Err: status.Error(codes.DeadlineExceeded, "x"), BytesSent: true}, false); o != outcomeSlow {
		t.Fatalf("a deadline after the request was sent counts as %d, want a timeout", o)
	}
	if o := doneOutcome(balancer.DoneInfo{Err: status.Error(codes.Unavailable, "x")}, false); o != outcomeFailure {
		t.Fatalf("UNAVAILABLE before anything was sent counts as %d, want a failure (the connection is gone)", o)
	}
	c, _ := testCore(t, Balancing{Outlier: Outlier{Consecutive: 5}}, 2, nil)
	e := c.set.Load().all[0].ep
	answer(c, e, time.Millisecond)
	for range 3 {
		c.finish(e, c.start(e), outcomeFailure)
	}
	before := e.ewma.Load()
	c.finish(e, c.start(e), doneOutcome(balancer.DoneInfo{}, false))
	if e.consec.Load() != 3 || e.ewma.Load() != before {
		t.Fatalf("a pick that sent nothing changed the instance: %d failures in a row (want 3), estimate changed %v", e.consec.Load(), e.ewma.Load() != before)
	}
}

func TestTypicalLatencyResistsOutliers(t *testing.T) {
	c, _ := testCore(t, Balancing{}, 2, nil)
	e := c.set.Load().all[0].ep
	for range 50 {
		answer(c, e, time.Millisecond)
	}
	answer(c, e, time.Second)
	// One answer moves it by at most (4-1)/16 of itself.
	if typ := time.Duration(math.Float64frombits(c.typical.Load())); typ > 1200*time.Microsecond {
		t.Fatalf("one 1s answer among 1ms ones made the typical latency %v", typ)
	}
}

// TestSetBalancingKeepsInstanceState: a new balancing changes the pick
// sets, while every instance keeps its latency estimate and an ejected one
// stays ejected, until an update switches ejection off.
func TestSetBalancingKeepsInstanceState(t *testing.T) {
	c, _ := testCore(t, Balancing{Outlier: Outlier{Consecutive: 1, BaseEjection: time.Hour}}, 4,
		func(i int) map[string]string {
			return map[string]string{discovery.MetaVersion: []string{"v1", "v1", "v1", "canary"}[i]}
		})
	all := c.set.Load().all
	for _, m := range all {
		c.finish(m.ep, c.start(m.ep), outcomeSuccess)
	}
	bad := all[0].ep
	c.finish(bad, c.start(bad), outcomeFailure)
	if !bad.ejected {
		t.Fatal("the failing instance was not ejected")
	}
	ewma := map[*endpoint]uint64{}
	for _, m := range all {
		ewma[m.ep] = m.ep.ewma.Load()
	}

	b, err := Balancing{Canary: &Canary{Weight: 1}, Outlier: Outlier{Consecutive: 1, BaseEjection: time.Hour}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c.setBalancing(b)
	for range 100 {
		m, err := c.pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.ep.inst.Meta[discovery.MetaVersion] != "canary" {
			t.Fatalf("at canary weight 1 a call went to %s", m.ep.inst.ID)
		}
	}
	for _, m := range all {
		if got := m.ep.ewma.Load(); got != ewma[m.ep] {
			t.Errorf("%s: latency estimate %v after the update, want %v", m.ep.inst.ID, math.Float64frombits(got), math.Float64frombits(ewma[m.ep]))
		}
	}
	if !bad.ejected || len(c.set.Load().all) != 3 {
		t.Fatalf("after the update: ejected %v, %d eligible; want the failing instance still out", bad.ejected, len(c.set.Load().all))
	}

	b.Outlier.Disabled = true
	c.setBalancing(b)
	if bad.ejected || len(c.set.Load().all) != 4 {
		t.Fatalf("after switching ejection off: ejected %v, %d eligible; want all 4 back", bad.ejected, len(c.set.Load().all))
	}
}
