package client

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics of the canary and its baseline, recorded while a Canary is set.
const (
	// MetricSubsetCalls counts calls by subset ("canary" or "baseline")
	// and outcome ("success" or "error"), with the attribute "service".
	MetricSubsetCalls = "vitamin.client.subset.calls"
	// MetricSubsetDuration is the latency of successful calls by subset,
	// in seconds.
	MetricSubsetDuration = "vitamin.client.subset.duration"
	// MetricCanaryPulls counts canaries the confidence guard pulled.
	MetricCanaryPulls = "vitamin.client.canary.pulls"
)

// GuardEvent says why the confidence guard pulled a canary, with the
// evidence: both subsets' figures over the window that decided. It is a
// plain value.
type GuardEvent struct {
	// Service is the called service; Canary the canary subset, as
	// "key=value".
	Service string `json:"service"`
	Canary  string `json:"canary"`
	// Reason is "errors" or "latency"; Detail says it in words.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// Window is the number of the window that decided (from 0) and
	// P the bound on the chance of its figures if the canary were as good
	// as the baseline.
	Window int     `json:"window"`
	P      float64 `json:"p"`
	// CanaryStats and Baseline are the subsets' figures in the window.
	CanaryStats SubsetStats `json:"canary_stats"`
	Baseline    SubsetStats `json:"baseline"`
	// At is when the canary was pulled.
	At time.Time `json:"at"`
}

// SubsetStats are one subset's figures over a guard window.
type SubsetStats struct {
	// Calls and Errors count its calls and their failures and timeouts.
	Calls  uint64 `json:"calls"`
	Errors uint64 `json:"errors"`
	// Quantile is the latency quantile of its successful calls
	// (Guard.LatencyQuantile), to the resolution of the guard's histogram
	// (about 9%).
	Quantile time.Duration `json:"quantile"`
	// Slow counts its successful calls slower than Threshold, which is
	// LatencyMargin × the baseline's quantile (set on the canary's
	// figures only).
	Slow      uint64        `json:"slow,omitempty"`
	Threshold time.Duration `json:"threshold,omitempty"`
}

// WithGuardHandler calls fn, on a goroutine of its own, each time the
// confidence guard of a canary pulls it (see Guard).
func WithGuardHandler(fn func(GuardEvent)) Option {
	return option(func(o *options) { o.guardHandler = fn })
}

// Latency histogram of a guard window: histPerOctave buckets per doubling
// from histMin, the first bucket holding everything below.
const (
	histPerOctave = 8
	histMin       = float64(time.Microsecond)
	histBuckets   = histPerOctave*28 + 1 // up to about 4.5 minutes
)

func histBucket(ns float64) int {
	if ns <= histMin {
		return 0
	}
	return min(int(math.Log2(ns/histMin)*histPerOctave)+1, histBuckets-1)
}

// histUpper is the upper bound of bucket i, in nanoseconds.
func histUpper(i int) float64 { return histMin * math.Exp2(float64(i)/histPerOctave) }

// subset is one subset's counts in a window.
type subset struct {
	calls, errors atomic.Uint64
	lat           [histBuckets]atomic.Uint64 // successful calls
}

type window struct {
	n    int // its number, from 0
	size uint64
	sub  [2]subset // baseline, canary
}

// guard is the confidence guard of one client's canary.
type guard struct {
	service string
	canary  string // "key=value"
	cfg     Guard
	opts    *guardOptions // the client's: set before its first call
	pulls   metric.Int64Counter
	calls   metric.Int64Counter
	dur     metric.Float64Histogram
	attrs   [2][2]metric.MeasurementOption // [subset][error]
	durAttr [2]metric.MeasurementOption
	svcAttr metric.MeasurementOption

	win    atomic.Pointer[window]
	pulled atomic.Pointer[GuardEvent]
	mu     sync.Mutex // serialises the end of a window
}

func newGuard(service string, cn *Canary, o *guardOptions) *guard {
	g := &guard{service: service, canary: cn.Key + "=" + cn.Value, cfg: *cn.Guard, opts: o}
	if o.meter != nil {
		m := o.meter.Meter("github.com/vitamin-go/vitamin/client")
		g.pulls, _ = m.Int64Counter(MetricCanaryPulls, metric.WithDescription("Canaries the confidence guard pulled."))
		g.calls, _ = m.Int64Counter(MetricSubsetCalls, metric.WithDescription("Calls by subset (canary, baseline) and outcome."))
		g.dur, _ = m.Float64Histogram(MetricSubsetDuration, metric.WithUnit("s"), metric.WithDescription("Latency of successful calls by subset."))
	}
	for i, name := range []string{"baseline", "canary"} {
		for j, outcome := range []string{"success", "error"} {
			g.attrs[i][j] = metric.WithAttributes(attribute.String("service", service), attribute.String("subset", name), attribute.String("outcome", outcome))
		}
		g.durAttr[i] = metric.WithAttributes(attribute.String("service", service), attribute.String("subset", name))
	}
	g.svcAttr = metric.WithAttributes(attribute.String("service", service), attribute.String("canary", g.canary))
	g.win.Store(&window{size: uint64(g.cfg.MinCalls)})
	return g
}

// guardOptions are what a guard takes from the client's options.
type guardOptions struct {
	logger  *slog.Logger
	handler func(GuardEvent)
	meter   metric.MeterProvider
}

// record counts one finished call of the canary (canary true) or the
// baseline; it ends the window when the canary's calls fill it.
func (g *guard) record(canary bool, rtt float64, failed bool) {
	i, e := 0, 0
	if canary {
		i = 1
	}
	w := g.win.Load()
	s := &w.sub[i]
	n := s.calls.Add(1)
	if failed {
		e = 1
		s.errors.Add(1)
	} else {
		s.lat[histBucket(rtt)].Add(1)
	}
	if g.calls != nil {
		g.calls.Add(context.Background(), 1, g.attrs[i][e])
		if !failed {
			g.dur.Record(context.Background(), rtt/float64(time.Second), g.durAttr[i])
		}
	}
	if canary && n == w.size {
		g.endWindow(w)
	}
}

// endWindow tests the window and starts the next one.
func (g *guard) endWindow(w *window) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.win.Load() != w {
		return
	}
	g.win.Store(&window{n: w.n + 1, size: min(2*w.size, uint64(g.cfg.MaxWindow))})
	if g.pulled.Load() != nil {
		return
	}
	// Each window's two tests share FalseAlarm / 2^(n+1): summed over
	// every window, false alarms stay below FalseAlarm.
	alpha := g.cfg.FalseAlarm / math.Exp2(float64(w.n+1)) / 2
	ev := g.judge(w, alpha)
	if ev == nil {
		return
	}
	ev.Service, ev.Canary, ev.Window, ev.At = g.service, g.canary, w.n, time.Now()
	g.pulled.Store(ev)
	if g.pulls != nil {
		g.pulls.Add(context.Background(), 1, g.svcAttr)
	}
	if lg := g.opts.logger; lg != nil {
		lg.Warn("client: the confidence guard pulled the canary", "service", g.service, "canary", g.canary,
			"reason", ev.Reason, "detail", ev.Detail, "window", ev.Window, "p", ev.P,
			"canary_calls", ev.CanaryStats.Calls, "canary_errors", ev.CanaryStats.Errors,
			"baseline_calls", ev.Baseline.Calls, "baseline_errors", ev.Baseline.Errors)
	}
	if h := g.opts.handler; h != nil {
		go h(*ev)
	}
}

// judge returns the verdict on a finished window: nil, or why the canary
// is worse. Each test fails a canary as good as the baseline with a
// chance below alpha.
func (g *guard) judge(w *window, alpha float64) *GuardEvent {
	var st [2]SubsetStats
	var ok [2]uint64 // successful calls
	for i := range st {
		st[i].Calls, st[i].Errors = w.sub[i].calls.Load(), w.sub[i].errors.Load()
		for b := range w.sub[i].lat {
			ok[i] += w.sub[i].lat[b].Load()
		}
		st[i].Quantile = time.Duration(quantile(&w.sub[i], ok[i], g.cfg.LatencyQuantile))
	}
	base, can := st[0], st[1]
	ev := &GuardEvent{CanaryStats: can, Baseline: base}
	if base.Calls == 0 || can.Calls == 0 {
		return nil
	}

	// Errors: the baseline's rate, raised to what it could be at worst
	// (a Chernoff bound, alpha/2), plus the margin, against the canary's
	// (Chernoff, alpha/2).
	pb := klAbove(float64(base.Errors)/float64(base.Calls), float64(base.Calls), math.Log(2/alpha))
	if p0, rate := min(pb+g.cfg.ErrorMargin, 1), float64(can.Errors)/float64(can.Calls); rate > p0 {
		if p := chernoff(can.Calls, can.Errors, p0); p < alpha/2 {
			ev.Reason, ev.P = "errors", p
			ev.Detail = fmt.Sprintf("%.1f%% of %d canary calls failed against %.1f%% of %d baseline calls (margin %.1f%%)",
				100*rate, can.Calls, 100*float64(base.Errors)/float64(base.Calls), base.Calls, 100*g.cfg.ErrorMargin)
			return ev
		}
	}

	// Latency: a baseline order statistic that is at least its true
	// quantile but with a chance below alpha/2 (fewer of its calls than
	// that fall below the quantile: Chernoff), times the margin, is the
	// threshold; a canary as good as the baseline exceeds it with a chance
	// of at most 1 - quantile per call (Chernoff, alpha/2). Only buckets
	// wholly above the threshold count.
	q := g.cfg.LatencyQuantile
	n := float64(ok[0])
	if ok[1] == 0 || n == 0 {
		return nil
	}
	a := klAbove(q, n, math.Log(2/alpha))
	if a >= 1 {
		return nil // too few baseline calls to bound its quantile
	}
	k := math.Ceil(a * n)
	threshold := g.cfg.LatencyMargin * orderStat(&w.sub[0], uint64(k))
	var slow uint64
	for b := range w.sub[1].lat {
		if b > 0 && histUpper(b-1) >= threshold {
			slow += w.sub[1].lat[b].Load()
		}
	}
	ev.CanaryStats.Slow, ev.CanaryStats.Threshold = slow, time.Duration(threshold)
	if rate := float64(slow) / float64(ok[1]); rate > 1-q {
		if p := chernoff(ok[1], slow, 1-q); p < alpha/2 {
			ev.Reason, ev.P = "latency", p
			ev.Detail = fmt.Sprintf("%d of %d successful canary calls took longer than %v (%g × the baseline's p%g, %v), against %.1f%% allowed",
				slow, ok[1], time.Duration(threshold).Round(time.Microsecond), g.cfg.LatencyMargin, 100*q, base.Quantile, 100*(1-q))
			return ev
		}
	}
	return nil
}

// quantile returns the upper bound of the bucket holding quantile q of
// the n successful calls of s, in nanoseconds; 0 without calls.
func quantile(s *subset, n uint64, q float64) float64 {
	if n == 0 {
		return 0
	}
	return orderStat(s, uint64(math.Ceil(q*float64(n))))
}

// orderStat returns the upper bound of the bucket holding the k-th
// fastest successful call of s (from 1), in nanoseconds.
func orderStat(s *subset, k uint64) float64 {
	var seen uint64
	for b := range s.lat {
		if seen += s.lat[b].Load(); seen >= k {
			return histUpper(b)
		}
	}
	return histUpper(histBuckets - 1)
}

// klAbove returns the smallest p above phat with n·KL(phat ‖ p) ≥ l (an
// upper confidence bound on a rate phat seen over n draws), or 1 when
// there is none. KL is the Bernoulli relative entropy.
func klAbove(phat, n, l float64) float64 {
	if phat >= 1 || n*kl(phat, 1-1e-12) < l {
		return 1
	}
	lo, hi := phat, 1.0
	for range 60 {
		mid := (lo + hi) / 2
		if n*kl(phat, mid) >= l {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// kl is the relative entropy of Bernoulli(a) from Bernoulli(p).
func kl(a, p float64) float64 {
	var d float64
	if a > 0 {
		d += a * math.Log(a/p)
	}
	if a < 1 {
		d += (1 - a) * math.Log((1-a)/(1-p))
	}
	return d
}

// chernoff bounds the chance that n draws with success chance p give k or
// more successes (k/n > p): exp(-n·KL(k/n ‖ p)).
func chernoff(n, k uint64, p float64) float64 {
	a := float64(k) / float64(n)
	if a <= p {
		return 1
	}
	return math.Exp(-float64(n) * kl(a, p))
}
