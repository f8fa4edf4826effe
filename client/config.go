package client

import (
	"cmp"
	"math"
	"time"

	"github.com/vitamin-go/vitamin/discovery"
)

// Algorithm names how the balancer chooses among eligible instances. It is
// a string value.
type Algorithm string

// Algorithms.
const (
	// PowerOfTwo samples two instances at random and takes the one with
	// the lower cost: peak-EWMA latency × (in-flight requests + 1). It is
	// the default.
	PowerOfTwo Algorithm = "p2c"
	// RoundRobin takes eligible instances in turn, ignoring latency and
	// load. Outlier ejection, subsets and zones still apply.
	RoundRobin Algorithm = "round_robin"
)

// Defaults of Balancing and Outlier.
const (
	DefaultDecayTime       = 10 * time.Second
	DefaultConsecutive     = 5
	DefaultBaseEjection    = 30 * time.Second
	DefaultMaxEjection     = 5 * time.Minute
	DefaultMaxEjectedShare = 0.5
	DefaultPanicThreshold  = 0.5
)

// Config is the settings of one client that a person writes in a file,
// such as the value under a service's name in a map of clients:
//
//	inventory:
//	  balancing:
//	    algorithm: round_robin
//	    outlier: {consecutive: 3, base_ejection: 10s}
//	    canary: {weight: 0.05}
//
// Its keys are snake_case, in yaml and json tags alike. The zero value gives
// the documented defaults. Things only code can give (the watcher, the
// policy registry, the caller's name, loggers, transports) are options. It
// is plain data, safe to copy and to read concurrently; a constructor that
// takes it reports an invalid field with a *FieldError.
type Config struct {
	// Balancing configures the balancer: algorithm, outlier ejection,
	// canary, pinning, sticky subsets and zone.
	Balancing Balancing `yaml:"balancing,omitempty" json:"balancing,omitempty"`
}

// Balancing configures the balancer of a client: the algorithm, outlier
// ejection and the subsets calls are routed to. A call's subset is chosen in
// this order: its pin value if Pin is set and the call carries one, else its
// sticky key's group if Sticky is set and the call carries a key, else the
// canary or the other instances by Canary's weight, else the instances in
// the caller's Zone; within the subset, Algorithm picks the instance. The
// zero value gives the documented defaults. It is plain data with yaml and json tags, safe to copy
// and to read concurrently.
type Balancing struct {
	// Algorithm is PowerOfTwo (default) or RoundRobin.
	Algorithm Algorithm `yaml:"algorithm,omitempty" json:"algorithm,omitempty"`
	// DecayTime is the longest time constant of the peak-EWMA latency. A
	// slower sample replaces an instance's estimate at once, up to four
	// times the larger of the estimate and the service's typical latency
	// (so that one pause does not make an instance look many times slower
	// than its peers); a faster one pulls it down by the share of
	// DecayTime elapsed since the last sample, and by at least an eighth.
	// The estimate of an instance that is not called decays toward zero
	// over eight times the typical latency, so that an instance made
	// expensive by one slow answer is soon called again. From the second
	// time in a row that an instance is tried again and is still more
	// than four times slower than typical, that time doubles each time, up
	// to DecayTime, so that a slow instance is probed ever more rarely.
	// Default 10s.
	DecayTime time.Duration `yaml:"decay_time,omitempty" json:"decay_time,omitempty"`
	// FailurePenalty is the latency a failed call (connection error,
	// UNAVAILABLE, 5xx) counts as when it failed faster than that, so that
	// an instance that fails fast does not attract traffic. Default: five
	// times the typical latency of the service's successful calls (1ms
	// before there is one), enough to steer calls elsewhere without
	// shunning the instance for long after a single failure; outlier
	// ejection deals with instances that keep failing.
	FailurePenalty time.Duration `yaml:"failure_penalty,omitempty" json:"failure_penalty,omitempty"`
	// Outlier configures outlier ejection.
	Outlier Outlier `yaml:"outlier,omitempty" json:"outlier,omitempty"`
	// Stage selects instances that receive only calls pinned to them (a
	// smoke test in production without real traffic); nil switches it
	// off. It needs Pin.
	Stage *Stage `yaml:"stage,omitempty" json:"stage,omitempty"`
	// Canary sends a share of calls to the instances it selects; nil
	// switches it off.
	Canary *Canary `yaml:"canary,omitempty" json:"canary,omitempty"`
	// Pin routes calls that carry a pin value to the instances whose
	// metadata has that value; nil switches it off.
	Pin *Pin `yaml:"pin,omitempty" json:"pin,omitempty"`
	// Sticky assigns each call key to one subset of instances by the
	// key's hash; nil switches it off.
	Sticky *Sticky `yaml:"sticky,omitempty" json:"sticky,omitempty"`
	// Zone is the caller's zone: when some eligible instances carry the
	// same zone (metadata "zone"), calls go to them only. Empty switches
	// zone preference off.
	Zone string `yaml:"zone,omitempty" json:"zone,omitempty"`
}

// Outlier configures per-instance outlier ejection. An instance that fails
// Consecutive calls in a row (connection errors, gRPC UNAVAILABLE, HTTP 5xx,
// or timeouts — DEADLINE_EXCEEDED, a context deadline — of calls during
// which it answered nothing else, the calls in flight together counting
// once) is taken out of rotation for BaseEjection × the number of times it was
// ejected (at most MaxEjection). An HTTP instance that refuses a connection
// (nothing listens at its address any more) is ejected at once. The zero
// value gives the defaults; it is plain data.
type Outlier struct {
	// Disabled switches outlier ejection off.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Consecutive is the number of failures in a row that ejects an
	// instance. Default 5.
	Consecutive int `yaml:"consecutive,omitempty" json:"consecutive,omitempty"`
	// BaseEjection is how long a first ejection lasts. Default 30s.
	BaseEjection time.Duration `yaml:"base_ejection,omitempty" json:"base_ejection,omitempty"`
	// MaxEjection caps the ejection time. Default 5m.
	MaxEjection time.Duration `yaml:"max_ejection,omitempty" json:"max_ejection,omitempty"`
	// MaxEjectedShare is the largest share of instances ejected at once,
	// in (0, 1]; at least one instance may always be ejected. Default 0.5.
	MaxEjectedShare float64 `yaml:"max_ejected_share,omitempty" json:"max_ejected_share,omitempty"`
	// PanicThreshold: when the share of instances that are not ejected
	// falls below it, ejection is ignored and calls go to all instances.
	// In [0, 1]. Default 0.5.
	PanicThreshold float64 `yaml:"panic_threshold,omitempty" json:"panic_threshold,omitempty"`
}

// Canary sends Weight of all calls to the instances whose metadata has Key
// set to Value, and the rest to the other instances. It is plain data.
type Canary struct {
	// Key and Value select the canary instances. Defaults
	// discovery.MetaVersion and "canary".
	Key   string `yaml:"key,omitempty" json:"key,omitempty"`
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
	// Weight is the share of calls sent to the canary, in [0, 1].
	Weight float64 `yaml:"weight" json:"weight"`
	// Guard compares the canary with the other instances and stops
	// routing to it when it is worse; nil switches it off.
	Guard *Guard `yaml:"guard,omitempty" json:"guard,omitempty"`
}

// Stage selects the instances whose metadata Key equals Value: they get no
// call but those pinned to them (Balancing.Pin), so a new build can be
// tried in production with production settings and no real traffic.
// Promotion is a configuration change: Stage off and a Canary on the same
// instances. It is plain data.
type Stage struct {
	// Key and Value select the stage instances. Defaults
	// discovery.MetaVersion and "stage".
	Key   string `yaml:"key,omitempty" json:"key,omitempty"`
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
}

// Guard is the confidence guard of a canary: it compares the canary's calls
// with the other instances' (the baseline) over windows of canary calls —
// the first MinCalls long, each next one twice as long up to MaxWindow —
// and pulls the canary (its share drops to 0; pinned calls still reach
// it) when, in a window, its error rate exceeds the baseline's by more
// than ErrorMargin, or more of its calls than LatencyQuantile allows are
// slower than LatencyMargin × the baseline's LatencyQuantile, with a
// one-sided test whose false alarms over the canary's whole life stay
// below FalseAlarm (each window's test gets a share of it that halves from
// one window to the next). A pulled canary comes back only with a change
// of the Canary configuration. The zero value gives the defaults; it is
// plain data.
type Guard struct {
	// MinCalls is the length of the first window, in canary calls.
	// Default 100.
	MinCalls int `yaml:"min_calls,omitempty" json:"min_calls,omitempty"`
	// MaxWindow caps the window length, in canary calls. Default 6400.
	MaxWindow int `yaml:"max_window,omitempty" json:"max_window,omitempty"`
	// ErrorMargin is how much higher than the baseline's the canary's
	// error rate (failures and timeouts) may be, in [0, 1]. Default 0.05.
	ErrorMargin float64 `yaml:"error_margin,omitempty" json:"error_margin,omitempty"`
	// LatencyQuantile is the quantile of successful calls compared, in
	// (0, 1). Default 0.99.
	LatencyQuantile float64 `yaml:"latency_quantile,omitempty" json:"latency_quantile,omitempty"`
	// LatencyMargin is how many times slower than the baseline's quantile
	// a canary call may be before it counts as slow; at least 1. Default
	// 1.5.
	LatencyMargin float64 `yaml:"latency_margin,omitempty" json:"latency_margin,omitempty"`
	// FalseAlarm bounds the chance of pulling a canary as good as the
	// baseline, in (0, 1). Default 0.001.
	FalseAlarm float64 `yaml:"false_alarm,omitempty" json:"false_alarm,omitempty"`
}

// Defaults of Guard.
const (
	DefaultGuardMinCalls        = 100
	DefaultGuardMaxWindow       = 6400
	DefaultGuardErrorMargin     = 0.05
	DefaultGuardLatencyQuantile = 0.99
	DefaultGuardLatencyMargin   = 1.5
	DefaultGuardFalseAlarm      = 0.001
)

// Pin routes a call to the instances whose metadata MetaKey equals the
// call's pin value, read from the HTTP header or gRPC metadata Header, or
// else from the baggage member Baggage of the call's context. A call whose
// pin value no instance carries fails with an error matching
// ErrNoInstances. It is plain data.
type Pin struct {
	// Header is the HTTP header (and, lower-cased, the gRPC metadata key)
	// that carries the pin value. Default "Vitamin-Pin".
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Baggage is the OpenTelemetry baggage member read when the header is
	// absent. Default "vitamin.pin"; "-" switches baggage off.
	Baggage string `yaml:"baggage,omitempty" json:"baggage,omitempty"`
	// MetaKey is the instance metadata the pin value is matched against.
	// Default discovery.MetaVersion.
	MetaKey string `yaml:"meta_key,omitempty" json:"meta_key,omitempty"`
}

// Sticky groups instances by the value of their metadata MetaKey and
// assigns each call key (read from the HTTP header or gRPC metadata Header)
// to one group by the key's hash (rendezvous hashing), so that a key always
// lands on the same group — an A/B assignment — while the group exists.
// Calls without a key are balanced over all instances. It is plain data.
type Sticky struct {
	// Header carries the call key. Default "Vitamin-Sticky-Key".
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// MetaKey names the metadata that defines the groups. Default
	// discovery.MetaVersion.
	MetaKey string `yaml:"meta_key,omitempty" json:"meta_key,omitempty"`
}

// Validate reports the first invalid field of c as a *FieldError, such as
// "Config.Balancing.Outlier.MaxEjectedShare". The constructors call it; it
// is exported for checking a Config read from a file before it is used.
func (c Config) Validate() error {
	_, err := c.Balancing.withDefaults()
	return err
}

// withDefaults validates b and fills in defaults.
func (b Balancing) withDefaults() (Balancing, error) {
	const f = "Config.Balancing."
	switch b.Algorithm {
	case "":
		b.Algorithm = PowerOfTwo
	case PowerOfTwo, RoundRobin:
	default:
		return b, invalid(f+"Algorithm", b.Algorithm, `must be "`+string(PowerOfTwo)+`" or "`+string(RoundRobin)+`"`)
	}
	var err error // the first invalid field; later checks do nothing
	o := &b.Outlier
	orDefault(&err, f+"DecayTime", &b.DecayTime, DefaultDecayTime)
	orDefault(&err, f+"FailurePenalty", &b.FailurePenalty, 0) // 0: derived from latencies
	orDefault(&err, f+"Outlier.Consecutive", &o.Consecutive, DefaultConsecutive)
	orDefault(&err, f+"Outlier.BaseEjection", &o.BaseEjection, DefaultBaseEjection)
	orDefault(&err, f+"Outlier.MaxEjection", &o.MaxEjection, max(DefaultMaxEjection, o.BaseEjection))
	shareOrDefault(&err, f+"Outlier.MaxEjectedShare", &o.MaxEjectedShare, DefaultMaxEjectedShare)
	shareOrDefault(&err, f+"Outlier.PanicThreshold", &o.PanicThreshold, DefaultPanicThreshold)
	if err == nil && o.MaxEjection < o.BaseEjection {
		err = invalid(f+"Outlier.MaxEjection", o.MaxEjection, "must be at least Outlier.BaseEjection ("+o.BaseEjection.String()+")")
	}
	if c := b.Canary; c != nil {
		cc := *c
		shareOrDefault(&err, f+"Canary.Weight", &cc.Weight, 0)
		cc.Key = cmp.Or(cc.Key, discovery.MetaVersion)
		cc.Value = cmp.Or(cc.Value, "canary")
		if g := cc.Guard; g != nil {
			gg := *g
			orDefault(&err, f+"Canary.Guard.MinCalls", &gg.MinCalls, DefaultGuardMinCalls)
			orDefault(&err, f+"Canary.Guard.MaxWindow", &gg.MaxWindow, max(DefaultGuardMaxWindow, gg.MinCalls))
			shareOrDefault(&err, f+"Canary.Guard.ErrorMargin", &gg.ErrorMargin, DefaultGuardErrorMargin)
			shareOrDefault(&err, f+"Canary.Guard.LatencyQuantile", &gg.LatencyQuantile, DefaultGuardLatencyQuantile)
			shareOrDefault(&err, f+"Canary.Guard.FalseAlarm", &gg.FalseAlarm, DefaultGuardFalseAlarm)
			if gg.LatencyMargin == 0 {
				gg.LatencyMargin = DefaultGuardLatencyMargin
			}
			switch {
			case err != nil:
			case gg.MaxWindow < gg.MinCalls:
				err = invalid(f+"Canary.Guard.MaxWindow", gg.MaxWindow, "must be at least MinCalls")
			case gg.LatencyQuantile >= 1:
				err = invalid(f+"Canary.Guard.LatencyQuantile", gg.LatencyQuantile, "must be below 1")
			case gg.FalseAlarm >= 1:
				err = invalid(f+"Canary.Guard.FalseAlarm", gg.FalseAlarm, "must be below 1")
			case gg.LatencyMargin < 1 || math.IsNaN(gg.LatencyMargin):
				err = invalid(f+"Canary.Guard.LatencyMargin", gg.LatencyMargin, "must be at least 1")
			}
			cc.Guard = &gg
		}
		b.Canary = &cc
	}
	if s := b.Stage; s != nil {
		ss := *s
		ss.Key = cmp.Or(ss.Key, discovery.MetaVersion)
		ss.Value = cmp.Or(ss.Value, "stage")
		b.Stage = &ss
		if err == nil && b.Pin == nil {
			err = invalid(f+"Stage", "set", "needs Pin: calls reach a stage instance only when pinned to it")
		}
	}
	if p := b.Pin; p != nil {
		pp := *p
		pp.Header = cmp.Or(pp.Header, "Vitamin-Pin")
		pp.Baggage = cmp.Or(pp.Baggage, "vitamin.pin")
		pp.MetaKey = cmp.Or(pp.MetaKey, discovery.MetaVersion)
		b.Pin = &pp
	}
	if s := b.Sticky; s != nil {
		ss := *s
		ss.Header = cmp.Or(ss.Header, "Vitamin-Sticky-Key")
		ss.MetaKey = cmp.Or(ss.MetaKey, discovery.MetaVersion)
		b.Sticky = &ss
	}
	return b, err
}

// orDefault sets *err if it is nil and *v is negative, and sets *v to def
// if it is zero.
func orDefault[T int | time.Duration](err *error, field string, v *T, def T) {
	switch {
	case *err != nil:
	case *v < 0:
		*err = invalid(field, *v, "must not be negative")
	case *v == 0:
		*v = def
	}
}

// shareOrDefault sets *err if it is nil and *v is not in [0, 1], and sets
// *v to def if it is zero.
func shareOrDefault(err *error, field string, v *float64, def float64) {
	switch {
	case *err != nil:
	case *v < 0 || *v > 1 || math.IsNaN(*v):
		*err = invalid(field, *v, "must be in [0, 1]")
	case *v == 0:
		*v = def
	}
}
