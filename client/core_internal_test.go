package client

import (
	"fmt"
	"testing"
	"time"

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
