package client

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/internal/attempt"
)

// stallChecks are the shares of an attempt's time (from its start to its
// deadline) at which the balancer checks whether the attempt is stuck.
var stallChecks = [...]float64{0.5, 0.75}

// stallPeers is how many times quieter than the rest of the service an
// instance must be for an attempt on it to count as stuck: it has answered
// nothing for at least stallPeers × the time since the service's last
// answer.
const stallPeers = 4

// stallWatch follows the running attempt of a call that a retry can
// follow (see core.watch). Its fields are guarded by callState.mu.
type stallWatch struct {
	timer *time.Timer
	gen   uint64 // the attempt being watched; 0: none
	fired uint64 // the attempt that was stalled
	check int    // the index in stallChecks of the next check
	c     *core
	e     *endpoint
	start int64         // core clock of the attempt's start
	armed time.Time     // when the watch was armed
	span  time.Duration // from armed to the attempt's deadline
	st    attempt.Stall
}

// watch arms the stall watch of cs for the attempt on e that started at
// start, if ctx (the attempt's context) has a deadline and a retry can
// follow it. The attempt is stuck when, at one of stallChecks, its
// instance has answered nothing for three quarters of the attempt's age
// and for slowFactor times the typical latency, while the other instances
// keep answering (see stallPeers); the watch then ends it as timed out, and the
// policy retries it on another instance while the call still has time —
// the retry a timeout would have brought, only sooner. It returns the
// attempt's generation for unwatch.
func (c *core) watch(ctx context.Context, cs *callState, e *endpoint, start int64) uint64 {
	if cs == nil || cs.stream {
		return 0
	}
	end, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	st := attempt.From(ctx)
	if st == nil {
		return 0
	}
	now := time.Now()
	span := end.Sub(now)
	d := time.Duration(stallChecks[0] * float64(span))
	if d <= 0 {
		return 0
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w := &cs.watch
	w.gen++
	w.check, w.c, w.e, w.start, w.armed, w.span, w.st = 1, c, e, start, now, span, st
	if w.timer == nil {
		w.timer = time.AfterFunc(d, cs.checkStall)
	} else {
		w.timer.Reset(d)
	}
	return w.gen
}

// unwatch disarms the watch of the attempt gen and reports whether the
// watch stalled it.
func (cs *callState) unwatch(gen uint64) (stalled bool) {
	if gen == 0 {
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	w := &cs.watch
	if w.gen == gen {
		w.timer.Stop()
		w.e, w.st = nil, nil
	}
	return w.fired == gen
}

// checkStall is the watch timer's function.
func (cs *callState) checkStall() {
	cs.mu.Lock()
	w := &cs.watch
	c, e, st, gen, start := w.c, w.e, w.st, w.gen, w.start
	if e == nil {
		cs.mu.Unlock()
		return
	}
	now := c.now()
	if !c.stuck(e, start, now) {
		if w.check < len(stallChecks) {
			at := w.armed.Add(time.Duration(stallChecks[w.check] * float64(w.span)))
			w.check++
			w.timer.Reset(time.Until(at))
		}
		cs.mu.Unlock()
		return
	}
	w.fired = gen
	w.e, w.st = nil, nil
	cs.mu.Unlock()
	// Not under cs.mu: ending the attempt runs its context's AfterFuncs,
	// which may finish the attempt (see unwatch).
	if st.Stall() {
		c.redispatched(reasonStalled)
		if c.logger != nil {
			c.logger.Debug("client: attempt stalled on a quiet instance, retrying elsewhere", "service", c.service, "instance", e.inst.ID, "address", e.addr, "after", time.Duration(now-start))
		}
	}
}

// stuck reports whether an attempt on e that started at start is stuck at
// now (see watch).
func (c *core) stuck(e *endpoint, start, now int64) bool {
	quiet := now - max(e.answered.Load(), start)
	if 4*quiet < 3*(now-start) || float64(quiet) < slowFactor*c.rates().typical {
		return false
	}
	others := now - c.lastAnswer.Load()
	return others*stallPeers < quiet
}

// Reasons of MetricRedispatches.
const (
	reasonNotSent = "not_sent"
	reasonStalled = "stalled"
)

// redispatched counts an attempt sent to another instance.
func (c *core) redispatched(reason string) {
	if c.redispatchCtr != nil {
		c.redispatchCtr.Add(context.Background(), 1, metric.WithAttributes(attribute.String("service", c.service), attribute.String("reason", reason)))
	}
}
