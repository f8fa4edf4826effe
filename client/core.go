package client

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
)

// costFloor keeps the cost of an instance without latency data above zero,
// so that in-flight requests still count.
const costFloor = 1000 // ns

// penaltyFactor times the typical latency is what a fast failure counts
// as when Balancing.FailurePenalty is not set.
const penaltyFactor = 5

// minSampleWeight is the least weight a faster sample gets in the
// estimate.
const minSampleWeight = 1.0 / 8

// forgetFactor times the service's typical latency is the time constant
// over which the estimate of an instance that gets no calls decays toward
// zero: long enough to keep a slow instance aside for a few dozen calls'
// time, short enough that an instance made expensive by one unlucky
// sample is soon called again.
const forgetFactor = 8

// slowFactor bounds what one sample can do. A sample raises an estimate to
// at most slowFactor times the larger of the estimate and the typical
// latency, so that one outlier (a pause, a cold connection) does not make
// an instance look many times slower than its peers. A sample above
// slowFactor × the typical latency is slow: when it is the second slow
// probe of an instance in a row (a probe: a call to an instance whose
// estimate had decayed by a quarter since its last call), the instance's
// time constant doubles, up to Balancing.DecayTime, so that an instance
// that stays slow is probed ever more rarely. A sample within twice the
// typical latency starts the time constant over.
const slowFactor = 4

// clockTick is how stale the core clock read on the pick path may get
// while calls start or finish.
const clockTick = int64(20 * time.Microsecond)

// endpoint is one instance as the balancer sees it. The latency and load
// fields are atomics read on the pick path; the fields under "core.mu" are
// only touched with the core's lock held.
type endpoint struct {
	addr string

	inflight atomic.Int64
	ewma     atomic.Uint64 // float64 nanoseconds
	stamp    atomic.Int64  // core clock of the last update
	scale    atomic.Uint64 // float64: 2^-(slow probes in a row - 1), at most 1: how fast its estimate decays
	answered atomic.Int64  // core clock of its last answer, or of a call's start while none was in flight
	timedOut atomic.Int64  // core clock of the last timeout that counted toward ejection
	observed atomic.Bool
	canary   atomic.Bool // in the canary subset
	consec   atomic.Int32
	calls    atomic.Uint64

	mu      sync.Mutex // serialises latency updates
	strikes int        // e.mu: slow probes in a row

	// core.mu
	inst      discovery.Instance
	ready     bool
	sc        balancer.SubConn
	ejected   bool
	ejections int
	lastEject time.Time
	ejectedTo time.Time // when the ejection ends
	ejectWhy  string    // why it was ejected
	timer     *time.Timer
	gone      bool
}

// rates are the decay rates, in 1/ns, of latency estimates at one moment:
// fast is 1 / (forgetFactor × the typical latency), slow 1 / DecayTime.
type rates struct{ typical, fast, slow float64 }

// rates returns the decay rates of now.
func (c *core) rates() rates {
	slow := c.bal.Load().slowRate
	r := rates{typical: math.Float64frombits(c.typical.Load()), fast: slow, slow: slow}
	if r.typical > 0 {
		r.fast = 1 / (forgetFactor * r.typical)
	}
	return r
}

// elapsed returns dt in time constants of an estimate whose decay rate is
// scaled by scale: its time constant is forgetFactor × the typical latency
// / scale, at most DecayTime.
func (r rates) elapsed(dt int64, scale float64) float64 {
	return float64(dt) * max(r.fast*scale, r.slow)
}

// cost is the peak-EWMA latency times the requests in flight plus one.
// The estimate of an instance without calls in flight decays toward zero
// since its last update, so that it is tried again; one with calls in
// flight keeps its estimate until they answer — so that one probe of an
// instance avoided for being slow does not draw more calls after it — and
// if it has not answered for longer than that, it is at least that slow:
// the time since its last answer stands in for the estimate, so that
// calls stop going to an instance that is stuck long before the stuck
// ones time out.
func (e *endpoint) cost(now int64, r rates) float64 {
	ew := math.Float64frombits(e.ewma.Load())
	if !e.observed.Load() && r.typical > ew {
		ew = r.typical
	}
	n := e.inflight.Load()
	if n > 0 {
		// It is being tried: until an answer says otherwise, it is as
		// slow as it was last seen, or as it has been silent.
		if quiet := float64(now - e.answered.Load()); quiet > ew {
			ew = quiet
		}
	} else if dt := now - e.stamp.Load(); dt > 0 {
		ew *= decay(r.elapsed(dt, math.Float64frombits(e.scale.Load())))
	}
	return (ew + costFloor) * float64(n+1)
}

// decay returns exp(-x) for x ≥ 0, cheaply for small x.
func decay(x float64) float64 {
	switch {
	case x < 0.01:
		return 1 - x + x*x/2
	case x > 40:
		return 0
	}
	return math.Exp(-x)
}

// sample is what one attempt tells about an instance's latency.
type sample uint8

const (
	sampleFull  sample = iota // the instance answered after rtt
	sampleBound               // no answer after rtt: the latency is at least rtt
)

// observe folds one latency sample into the peak EWMA: a sample above the
// (decayed) estimate replaces it, up to slowFactor times the larger of the
// estimate and the typical latency; a lower one is averaged in with a
// weight that grows with the time since the last sample; a lower bound
// (no answer after rtt) raises it to rtt if it was lower. It also counts
// slow probes, which slow down the estimate's decay (see slowFactor).
func (e *endpoint) observe(rtt float64, kind sample, now int64, r rates, decayTime float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := math.Float64frombits(e.ewma.Load())
	dt := max(now-e.stamp.Load(), 0)
	x := r.elapsed(dt, math.Float64frombits(e.scale.Load()))
	cur := old * decay(x) // what the picker saw
	observed := e.observed.Load()
	if !observed && r.typical > cur {
		cur = r.typical
	}
	nw := rtt
	switch {
	case kind == sampleBound && rtt <= cur:
		return // nothing new: it is known to be at least that slow
	case kind == sampleBound:
		// No answer for rtt is not an outlier of the kind one answer can
		// be: it holds in full.
	case rtt >= cur:
		if r.typical > 0 {
			// The first call to an instance also sets up its
			// connection, and any call may meet a pause: one sample
			// moves the estimate up by slowFactor at most.
			nw = min(rtt, slowFactor*max(cur, r.typical))
		}
	default:
		// Each sample also moves the estimate at least 1/8 of the way,
		// so that at high rates one slow answer is forgotten after a
		// few calls rather than after DecayTime.
		w := min(decay(float64(dt)/decayTime), 1-minSampleWeight)
		nw = cur*w + rtt*(1-w)
	}
	if r.typical > 0 {
		switch {
		case rtt <= 2*r.typical:
			e.strikes = 0
		case rtt > slowFactor*r.typical && observed && x > 0.25 && e.strikes < 64:
			e.strikes++ // a probe, and it is still slow
		}
		e.scale.Store(math.Float64bits(math.Ldexp(1, -max(e.strikes-1, 0))))
	}
	e.ewma.Store(math.Float64bits(nw))
	e.stamp.Store(now)
	e.observed.Store(true)
}

// member is an eligible endpoint and, for gRPC, its ready SubConn.
type member struct {
	ep *endpoint
	sc balancer.SubConn
}

type group struct {
	value   string
	hash    uint64
	members []member
}

// pickSet is an immutable view of the eligible endpoints and their subsets,
// swapped atomically whenever membership, readiness or ejection changes.
type pickSet struct {
	all         []member
	local       []member // all, in the caller's zone
	stable      []member // not canary
	stableLocal []member
	canary      []member
	pinned      map[string][]member
	bal         *balancing // what it was built for
	groups      []group
	known       int
	err         error // returned when all is empty
}

// callState follows one logical call across its attempts (retries and
// hedges): which instances it tried, and its routing keys.
type callState struct {
	mu     sync.Mutex
	tried  [4]*endpoint
	n      int
	pin    string
	sticky string
	stream bool

	// gRPC: what the attempts go through, and whether an attempt found no
	// instance to go to (see callInterceptor.invoke).
	invoker     grpc.UnaryInvoker
	streamer    grpc.Streamer
	noInstances atomic.Bool

	watch stallWatch // mu
}

// noInstances is the resilience outcome of an attempt that found no
// instance: neither retried (there is nowhere else to go, and the caller
// should learn it at once) nor a failure for the circuit breaker (which
// would keep the service's returning instances waiting).
var noInstances = resilience.Outcome{Code: "no_instances"}

func (s *callState) has(e *endpoint) bool {
	for i := 0; i < s.n; i++ {
		if s.tried[i] == e {
			return true
		}
	}
	return false
}

// add records e as tried and reports whether it was tried before.
func (s *callState) add(e *endpoint) (again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if again = s.has(e); !again {
		if s.n < len(s.tried) {
			s.tried[s.n] = e
			s.n++
		} else {
			copy(s.tried[:], s.tried[1:])
			s.tried[len(s.tried)-1] = e
		}
	}
	return again
}

type callKey struct{}

// callCtx carries a callState: one allocation for both the state and the
// context that holds it.
type callCtx struct {
	context.Context
	cs callState
}

func (c *callCtx) Value(key any) any {
	if key == (callKey{}) {
		return &c.cs
	}
	return c.Context.Value(key)
}

func (c *callCtx) String() string { return "client.callContext" }

func withCall(ctx context.Context) (context.Context, *callState) {
	c := &callCtx{Context: ctx}
	return c, &c.cs
}

func callFrom(ctx context.Context) *callState {
	s, _ := ctx.Value(callKey{}).(*callState)
	return s
}

// outcome is how a finished call counts for the balancer.
type outcome uint8

const (
	outcomeSuccess  outcome = iota // the instance answered
	outcomeFailure                 // connection error, UNAVAILABLE, 5xx
	outcomeSlow                    // deadline exceeded: no answer in time; counts toward ejection
	outcomeCanceled                // canceled by the caller, or a hedge that lost: no answer yet
	outcomeIgnore                  // says nothing about the instance: nothing was sent, or a stream
	outcomeRefused                 // connection refused: nothing listens there
)

// core is the balancer shared by the gRPC and HTTP clients of one service:
// membership from discovery, readiness from gRPC, latency, load and
// ejection per instance, and the immutable pick sets built from them.
type core struct {
	service  string
	bal      atomic.Pointer[balancing] // the current Balancing
	needConn bool                      // gRPC: only endpoints with a ready SubConn are eligible
	logger   *slog.Logger
	ejectCtr metric.Int64Counter
	attrs    metric.MeasurementOption

	redispatchCtr metric.Int64Counter

	guard     atomic.Pointer[guard] // the canary's confidence guard, if any
	guardOpts guardOptions
	epoch     time.Time

	set   atomic.Pointer[pickSet]
	clock atomic.Int64 // core clock of a recent finish, for the pick path

	lastAnswer atomic.Int64 // core clock of a recent answer of any instance
	rr         atomic.Uint64
	typical    atomic.Uint64 // float64: a moving average of all latencies

	mu      sync.Mutex
	eps     map[string]*endpoint
	ejected int
	closed  bool
	updated chan struct{} // closed and replaced on every membership update
	seen    bool          // a membership update arrived

	lastWatch atomic.Pointer[discovery.Snapshot] // the last snapshot of the watch, without its instances
}

func newCore(service string, cfg Balancing, needConn bool, logger *slog.Logger, mp metric.MeterProvider) *core {
	c := &core{
		service:  service,
		needConn: needConn,
		logger:   logger,
		epoch:    time.Now(),
		eps:      map[string]*endpoint{},
		updated:  make(chan struct{}),
		attrs:    metric.WithAttributes(attribute.String("service", service)),
	}
	if mp != nil {
		c.ejectCtr, _ = mp.Meter("github.com/vitamin-go/vitamin/client").Int64Counter(MetricEjections,
			metric.WithDescription("Instances ejected by outlier detection."))
		c.redispatchCtr, _ = mp.Meter("github.com/vitamin-go/vitamin/client").Int64Counter(MetricRedispatches,
			metric.WithDescription("Attempts sent to another instance because they never reached one or stalled."))
	}
	c.guardOpts = guardOptions{logger: logger, meter: mp}
	c.bal.Store(newBalancing(cfg))
	c.guardFor(nil, cfg.Canary)
	c.rebuildLocked()
	return c
}

// guardFor starts a new confidence guard (or none) when the canary
// changes from old to cn: a pulled canary comes back only so.
func (c *core) guardFor(old, cn *Canary) {
	switch {
	case cn == nil || cn.Guard == nil:
		c.guard.Store(nil)
	case old == nil || old.Key != cn.Key || old.Value != cn.Value || old.Weight != cn.Weight || old.Guard == nil || *old.Guard != *cn.Guard:
		c.guard.Store(newGuard(c.service, cn, &c.guardOpts))
	}
}

// pulled reports whether the confidence guard pulled the canary.
func (c *core) pulled() bool {
	g := c.guard.Load()
	return g != nil && g.pulled.Load() != nil
}

// balancing is a Balancing with its defaults and the rates derived from
// it. It is immutable.
type balancing struct {
	Balancing
	tau      float64 // DecayTime
	slowRate float64 // 1 / DecayTime
	penalty  float64
}

func newBalancing(b Balancing) *balancing {
	return &balancing{Balancing: b, tau: float64(b.DecayTime), slowRate: 1 / float64(b.DecayTime), penalty: float64(b.FailurePenalty)}
}

// setBalancing makes b the balancing of calls that start from now on.
// Instances keep their latency, load and ejection state; when b switches
// outlier ejection off, the ejected instances return at once.
func (c *core) setBalancing(b Balancing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guardFor(c.bal.Load().Canary, b.Canary)
	c.bal.Store(newBalancing(b))
	if b.Outlier.Disabled {
		for _, e := range c.eps {
			if e.ejected {
				e.ejected = false
				e.timer.Stop()
				e.timer = nil
				c.ejected--
			}
		}
	}
	c.rebuildLocked()
}

func (c *core) now() int64 { return int64(time.Since(c.epoch)) }

// update replaces the membership with instances.
func (c *core) update(instances []discovery.Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	// New instances start at the typical latency of successful calls, so
	// they neither attract nor repel traffic before their first answer.
	typical := c.typical.Load()
	now := c.now()
	keep := make(map[string]bool, len(instances))
	added, removed := 0, 0
	for _, inst := range instances {
		addr := inst.Endpoint()
		if keep[addr] {
			continue
		}
		keep[addr] = true
		e := c.eps[addr]
		if e == nil {
			e = &endpoint{addr: addr, ready: !c.needConn}
			e.ewma.Store(typical)
			e.stamp.Store(now)
			e.scale.Store(math.Float64bits(1))
			c.eps[addr] = e
			added++
		}
		e.inst = inst
	}
	for addr, e := range c.eps {
		if !keep[addr] {
			e.gone = true
			if e.timer != nil {
				e.timer.Stop()
				e.timer = nil
			}
			if e.ejected {
				e.ejected = false
				c.ejected--
			}
			delete(c.eps, addr)
			removed++
		}
	}
	c.rebuildLocked()
	c.seen = true
	close(c.updated)
	c.updated = make(chan struct{})
	if c.logger != nil && (added > 0 || removed > 0) {
		c.logger.Info("client: instances changed", "service", c.service, "instances", len(c.eps), "added", added, "removed", removed)
	}
}

// unblock lets calls waiting for a first membership update go on (and
// fail) when the watch cannot deliver one.
func (c *core) unblock() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.seen {
		c.seen = true
		close(c.updated)
		c.updated = make(chan struct{})
	}
}

// waitFirst blocks until the first membership update, ctx's end or close.
func (c *core) waitFirst(ctx context.Context) error {
	c.mu.Lock()
	if c.seen || c.closed {
		c.mu.Unlock()
		return nil
	}
	ch := c.updated
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setConn records the SubConn of addr and whether it is ready (gRPC).
func (c *core) setConn(addr string, sc balancer.SubConn, ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.eps[addr]
	if e == nil || (e.sc == sc && e.ready == ready) {
		return
	}
	e.sc, e.ready = sc, ready
	c.rebuildLocked()
}

// resetConns forgets all SubConns and ejections: the gRPC balancer closed,
// because the connection closed or went idle.
func (c *core) resetConns() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.eps {
		e.sc, e.ready = nil, false
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		e.ejected = false
	}
	c.ejected = 0
	c.rebuildLocked()
}

func (c *core) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, e := range c.eps {
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
	}
}

// rebuildLocked builds and publishes a new pick set. c.mu must be held.
func (c *core) rebuildLocked() {
	all := make([]*endpoint, 0, len(c.eps))
	for _, e := range c.eps {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].inst.ID < all[j].inst.ID })

	b := c.bal.Load()
	var ready, eligible []member
	for _, e := range all {
		e.canary.Store(b.Canary != nil && e.inst.Meta[b.Canary.Key] == b.Canary.Value)
		if !e.ready || (c.needConn && e.sc == nil) {
			continue
		}
		m := member{ep: e, sc: e.sc}
		ready = append(ready, m)
		if !e.ejected {
			eligible = append(eligible, m)
		}
	}
	// Panic: too few instances left after ejection; ignore ejection.
	if len(eligible) == 0 || float64(len(all)-c.ejected) < b.Outlier.PanicThreshold*float64(len(all)) {
		eligible = ready
	}
	// Stage instances get pinned calls only: out of every other list.
	pinnable := eligible
	if st := b.Stage; st != nil {
		staged := func(e *endpoint) bool { return e.inst.Meta[st.Key] == st.Value }
		eligible = filter(eligible, func(e *endpoint) bool { return !staged(e) })
	}
	s := &pickSet{all: eligible, known: len(all), bal: b}
	switch {
	case len(all) == 0:
		s.err = &NoInstancesError{Service: c.service, Reason: "no instances"}
	case len(eligible) == 0 && len(pinnable) > 0:
		s.err = &NoInstancesError{Service: c.service, Reason: "no instances but stage instances, which take only pinned calls"}
	case len(eligible) == 0:
		s.err = &NoInstancesError{Service: c.service, Reason: "no reachable instance"}
	}
	if z := b.Zone; z != "" {
		s.local = filter(eligible, func(e *endpoint) bool { return e.inst.Meta[discovery.MetaZone] == z })
	}
	if cn := b.Canary; cn != nil {
		isCanary := func(e *endpoint) bool { return e.inst.Meta[cn.Key] == cn.Value }
		s.canary = filter(eligible, isCanary)
		s.stable = filter(eligible, func(e *endpoint) bool { return !isCanary(e) })
		if z := b.Zone; z != "" {
			s.stableLocal = filter(s.stable, func(e *endpoint) bool { return e.inst.Meta[discovery.MetaZone] == z })
		}
	}
	if p := b.Pin; p != nil {
		s.pinned = map[string][]member{}
		for _, m := range pinnable {
			if v, ok := m.ep.inst.Meta[p.MetaKey]; ok {
				s.pinned[v] = append(s.pinned[v], m)
			}
		}
	}
	if st := b.Sticky; st != nil {
		byValue := map[string][]member{}
		for _, m := range eligible {
			v := m.ep.inst.Meta[st.MetaKey]
			byValue[v] = append(byValue[v], m)
		}
		for v, ms := range byValue {
			s.groups = append(s.groups, group{value: v, hash: hashString(v), members: ms})
		}
		sort.Slice(s.groups, func(i, j int) bool { return s.groups[i].value < s.groups[j].value })
	}
	c.set.Store(s)
}

func filter(ms []member, keep func(*endpoint) bool) []member {
	var out []member
	for _, m := range ms {
		if keep(m.ep) {
			out = append(out, m)
		}
	}
	return out
}

// hashString is 64-bit FNV-1a: stable across processes, so that every
// client assigns a sticky key to the same group.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// pick chooses an instance for one attempt of the call cs (nil: a call
// without routing keys or retries).
func (c *core) pick(cs *callState) (member, error) {
	m, _, err := c.pickAgain(cs)
	return m, err
}

// pickAgain is pick that also reports whether the call already tried the
// chosen instance (every eligible one was tried).
func (c *core) pickAgain(cs *callState) (member, bool, error) {
	s := c.set.Load()
	pinned := cs != nil && cs.pin != "" && s.pinned != nil
	if len(s.all) == 0 && !pinned {
		return member{}, false, s.err
	}
	list := s.all
	switch {
	case pinned:
		// Pinned calls reach stage instances too (s.all leaves them out).
		list = s.pinned[cs.pin]
		if len(list) == 0 {
			return member{}, false, &NoInstancesError{Service: c.service, Subset: s.bal.Pin.MetaKey + "=" + cs.pin, Reason: "no instances"}
		}
	case cs != nil && cs.sticky != "" && len(s.groups) > 0:
		k := hashString(cs.sticky)
		best, bestScore := 0, uint64(0)
		for i := range s.groups {
			if sc := mix(k ^ s.groups[i].hash); sc >= bestScore {
				best, bestScore = i, sc
			}
		}
		list = s.groups[best].members
	case s.bal.Canary != nil:
		if len(s.canary) > 0 && !c.pulled() && rand.Float64() < s.bal.Canary.Weight {
			list = s.canary
		} else if len(s.stableLocal) > 0 {
			list = s.stableLocal
		} else if len(s.stable) > 0 {
			list = s.stable
		}
	case len(s.local) > 0:
		list = s.local
	}
	m := c.choose(list, cs, s.bal.Algorithm)
	again := false
	if cs != nil {
		again = cs.add(m.ep)
	}
	return m, again, nil
}

func (c *core) choose(list []member, cs *callState, alg Algorithm) member {
	n := len(list)
	if n == 1 {
		return list[0]
	}
	if cs != nil {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		if cs.n == 0 {
			cs = nil
		}
	}
	if alg == RoundRobin {
		start := int(c.rr.Add(1) % uint64(n))
		for k := 0; k < n; k++ {
			m := list[(start+k)%n]
			if cs == nil || !cs.has(m.ep) {
				return m
			}
		}
		return list[start]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := list[i], list[j]
	if cs != nil {
		ta, tb := cs.has(a.ep), cs.has(b.ep)
		switch {
		case ta && !tb:
			return b
		case tb && !ta:
			return a
		case ta && tb:
			for k := 1; k < n; k++ {
				if m := list[(i+k)%n]; !cs.has(m.ep) {
					return m
				}
			}
		}
	}
	// The decay only needs a recent time; reading the clock would cost a
	// third of the pick.
	now := c.clock.Load()
	r := c.rates()
	if a.ep.cost(now, r) <= b.ep.cost(now, r) {
		return a
	}
	return b
}

// start records the start of an attempt on e and returns its start time.
func (c *core) start(e *endpoint) int64 {
	now := c.now()
	c.tick(now)
	if e.inflight.Add(1) == 1 {
		e.answered.Store(now) // it owes no answer from before
	}
	e.calls.Add(1)
	return now
}

// tick advances the core clock that the pick path reads.
func (c *core) tick(now int64) {
	if now-c.clock.Load() > clockTick {
		c.clock.Store(now)
	}
}

// finish records the end of an attempt on e.
func (c *core) finish(e *endpoint, start int64, o outcome) {
	e.inflight.Add(-1)
	if o == outcomeIgnore {
		return
	}
	o0 := o // before a refusal counts as a failure
	now := c.now()
	c.tick(now)
	rtt := float64(now - start)
	if g := c.guard.Load(); g != nil && o != outcomeCanceled {
		g.record(e.canary.Load(), rtt, o != outcomeSuccess)
	}
	r := c.rates()
	b := c.bal.Load()
	switch o {
	case outcomeSlow, outcomeCanceled:
		// No answer: the latency is at least rtt. A deadline that ran out
		// before the instance had the time of a typical call says
		// nothing about it. A later one counts toward ejection like a
		// failure if the instance answered no other call in the
		// meantime (a stuck instance answers nothing; one that answers
		// other calls is only slow at this one), and if the attempt
		// started after the last timeout that counted: the calls in
		// flight together when an instance froze — or when this
		// process was paused, which times out calls to every instance
		// at once — count once.
		if o == outcomeSlow && rtt < r.typical {
			return
		}
		e.observe(rtt, sampleBound, now, r, b.tau)
		if o == outcomeSlow && !b.Outlier.Disabled && e.answered.Load() <= start && start > e.timedOut.Load() {
			e.timedOut.Store(now)
			if int(e.consec.Add(1)) >= b.Outlier.Consecutive {
				c.eject(e, "consecutive timeouts")
			}
		}
		return
	case outcomeRefused:
		o = outcomeFailure
		if !b.Outlier.Disabled {
			// Nothing listens at the address: the process is gone.
			e.consec.Store(int32(b.Outlier.Consecutive))
		}
	}
	e.answered.Store(now)
	if now-c.lastAnswer.Load() > clockTick {
		c.lastAnswer.Store(now)
	}
	if o == outcomeFailure {
		penalty := b.penalty
		if penalty == 0 { // relative to the typical latency
			penalty = penaltyFactor * r.typical
			if penalty == 0 {
				penalty = float64(time.Millisecond)
			}
		}
		e.observe(max(rtt, penalty), sampleFull, now, r, b.tau)
		if !b.Outlier.Disabled && int(e.consec.Add(1)) >= b.Outlier.Consecutive {
			c.eject(e, failureWhy(o0))
		}
		return
	}
	// Only answers make the typical latency, and one outlier moves it by
	// a little: timeouts, failure penalties and pauses would inflate the
	// default penalty, new instances' starting estimate and the time the
	// balancer takes to forget.
	if t := r.typical; t == 0 {
		c.typical.Store(math.Float64bits(rtt))
	} else {
		c.typical.Store(math.Float64bits(t + (min(rtt, slowFactor*t)-t)/16))
	}
	e.observe(rtt, sampleFull, now, r, b.tau)
	if e.consec.Load() != 0 {
		e.consec.Store(0)
	}
}

// eject takes e out of rotation, if the cap on ejected instances allows.
func (c *core) eject(e *endpoint, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.ejected || e.gone || c.closed {
		return
	}
	o := c.bal.Load().Outlier
	allowed := max(1, int(o.MaxEjectedShare*float64(len(c.eps))))
	if c.ejected >= allowed {
		return
	}
	now := time.Now()
	if !e.lastEject.IsZero() && now.Sub(e.lastEject) > o.MaxEjection+o.BaseEjection*time.Duration(e.ejections) {
		e.ejections = 0 // healthy for long enough: start over
	}
	e.ejections++
	d := min(o.BaseEjection*time.Duration(e.ejections), o.MaxEjection)
	e.ejected = true
	e.lastEject = now
	e.ejectedTo, e.ejectWhy = now.Add(d), why
	e.consec.Store(0)
	c.ejected++
	e.timer = time.AfterFunc(d, func() { c.unEject(e) })
	c.rebuildLocked()
	if c.ejectCtr != nil {
		c.ejectCtr.Add(context.Background(), 1, c.attrs)
	}
	if c.logger != nil {
		c.logger.Warn("client: instance ejected", "service", c.service, "instance", e.inst.ID, "address", e.addr, "for", d, "ejections", e.ejections)
	}
}

func (c *core) unEject(e *endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !e.ejected || e.gone || c.closed {
		return
	}
	e.ejected = false
	e.timer = nil
	c.ejected--
	c.rebuildLocked()
	if c.logger != nil {
		c.logger.Info("client: instance back in rotation", "service", c.service, "instance", e.inst.ID, "address", e.addr)
	}
}
