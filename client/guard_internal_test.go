package client

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/discovery"
)

// guardTrial runs calls through a new guard, canaryShare of them to the
// canary, each call's latency and failure drawn by draw; it returns the
// canary calls made when the guard pulled the canary, or 0.
func guardTrial(t testing.TB, g Guard, rng *rand.Rand, calls int, canaryShare float64,
	draw func(rng *rand.Rand, canary bool) (time.Duration, bool)) int {
	t.Helper()
	b, err := Balancing{Canary: &Canary{Weight: canaryShare, Guard: &g}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	gd := newGuard("orders", b.Canary, &guardOptions{})
	canaryCalls := 0
	for range calls {
		canary := rng.Float64() < canaryShare
		if canary {
			canaryCalls++
		}
		d, failed := draw(rng, canary)
		gd.record(canary, float64(d), failed)
		if gd.pulled.Load() != nil {
			return canaryCalls
		}
	}
	return 0
}

// baselineCall is a service with 1% errors and a long-tailed latency
// around 2ms.
func baselineCall(rng *rand.Rand) (time.Duration, bool) {
	return time.Duration(float64(2*time.Millisecond) * math.Exp(0.5*rng.NormFloat64())), rng.Float64() < 0.01
}

// TestGuardFalseAlarms: a canary as good as the baseline, over 100 trials
// of 10,000 calls with 10% of them to the canary, is pulled in at most 1%
// of the trials when FalseAlarm is 1% — and in none at the default.
func TestGuardFalseAlarms(t *testing.T) {
	same := func(rng *rand.Rand, _ bool) (time.Duration, bool) { return baselineCall(rng) }
	for _, tc := range []struct {
		falseAlarm float64
		maxPulled  int
	}{{0.01, 1}, {0, 0}} {
		rng := rand.New(rand.NewPCG(1, uint64(1000*tc.falseAlarm)))
		pulled := 0
		for range 100 {
			if guardTrial(t, Guard{FalseAlarm: tc.falseAlarm}, rng, 10000, 0.1, same) > 0 {
				pulled++
			}
		}
		t.Logf("false alarm setting %v: pulled in %d of 100 trials", tc.falseAlarm, pulled)
		if pulled > tc.maxPulled {
			t.Errorf("false alarm setting %v: a canary as good as the baseline was pulled in %d of 100 trials, want at most %d", tc.falseAlarm, pulled, tc.maxPulled)
		}
	}
}

// TestGuardPullsABadCanary: a canary failing 20% of calls, or three times
// slower, with 10% of the calls, is pulled within a bounded number of
// canary calls — at the end of the third window (100 + 200 + 400 calls) at
// the latest for errors, and of the fourth for latency, over 20 trials.
func TestGuardPullsABadCanary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		draw   func(rng *rand.Rand, canary bool) (time.Duration, bool)
		within int
	}{
		{"20% errors", func(rng *rand.Rand, canary bool) (time.Duration, bool) {
			d, failed := baselineCall(rng)
			if canary {
				failed = rng.Float64() < 0.2
			}
			return d, failed
		}, 700},
		{"3× slower", func(rng *rand.Rand, canary bool) (time.Duration, bool) {
			d, failed := baselineCall(rng)
			if canary {
				d *= 3
			}
			return d, failed
		}, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, 3))
			worst := 0
			for range 20 {
				n := guardTrial(t, Guard{}, rng, 20000, 0.1, tc.draw)
				if n == 0 {
					t.Fatal("the canary was not pulled in 20,000 calls")
				}
				worst = max(worst, n)
			}
			t.Logf("pulled after at most %d canary calls (20 trials)", worst)
			if worst > tc.within {
				t.Errorf("pulled after up to %d canary calls, want at most %d", worst, tc.within)
			}
		})
	}
}

// TestStageTakesOnlyPinnedCalls: over 100,000 calls, none unpinned
// reaches a stage instance, every pinned one does.
func TestStageTakesOnlyPinnedCalls(t *testing.T) {
	c, _ := testCore(t, Balancing{Stage: &Stage{Value: "v2"}, Pin: &Pin{}}, 4,
		func(i int) map[string]string {
			return map[string]string{discovery.MetaVersion: []string{"v1", "v1", "v1", "v2"}[i]}
		})
	for i := range 100000 {
		cs := &callState{}
		pin := i%10 == 0
		if pin {
			cs.pin = "v2"
		}
		m, err := c.pick(cs)
		if err != nil {
			t.Fatal(err)
		}
		if staged := m.ep.inst.Meta[discovery.MetaVersion] == "v2"; staged != pin {
			t.Fatalf("call %d (pinned %v) went to %s", i, pin, m.ep.inst.ID)
		}
	}
}

// TestGuardPullStopsCanaryCallsUntilTheCanaryChanges: once pulled, the
// canary gets no unpinned call; an update that does not touch the canary
// leaves it pulled, one that changes it lets it back.
func TestGuardPullStopsCanaryCallsUntilTheCanaryChanges(t *testing.T) {
	cn := &Canary{Weight: 0.5, Guard: &Guard{MinCalls: 10}}
	b := Balancing{Canary: cn, Pin: &Pin{}, Outlier: Outlier{Disabled: true}}
	c, _ := testCore(t, b, 2, func(i int) map[string]string {
		return map[string]string{discovery.MetaVersion: []string{"v1", "canary"}[i]}
	})
	toCanary := func(pin string) int {
		n := 0
		for range 1000 {
			m, err := c.pick(&callState{pin: pin})
			if err != nil {
				t.Fatal(err)
			}
			if m.ep.canary.Load() {
				n++
			}
		}
		return n
	}
	for c.guard.Load().pulled.Load() == nil {
		m, _ := c.pick(nil)
		c.finish(m.ep, c.start(m.ep), map[bool]outcome{true: outcomeFailure, false: outcomeSuccess}[m.ep.canary.Load()])
	}
	if n := toCanary(""); n != 0 {
		t.Fatalf("%d of 1000 calls went to the pulled canary", n)
	}
	if n := toCanary("canary"); n != 1000 {
		t.Fatalf("%d of 1000 calls pinned to the canary reached it", n)
	}
	b2, _ := Balancing{Canary: cn, Pin: &Pin{}, Outlier: Outlier{Disabled: true}, Zone: "z1"}.withDefaults()
	c.setBalancing(b2)
	if n := toCanary(""); n != 0 {
		t.Fatalf("an update that left the canary alone let it back: %d of 1000 calls", n)
	}
	b3, _ := Balancing{Canary: &Canary{Weight: 0.4, Guard: &Guard{MinCalls: 10}}, Pin: &Pin{}, Outlier: Outlier{Disabled: true}}.withDefaults()
	c.setBalancing(b3)
	if n := toCanary(""); n == 0 {
		t.Fatal("a new canary weight did not let the canary back")
	}
}
