package admin

import (
	"encoding/json"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/resilience"
)

// PathState is the path of the JSON API: GET it for a State.
const PathState = "/api/v1/state"

// APIVersion is State.APIVersion. Fields are only added within a
// version; a change that removes or renames one makes a new version (a
// new path).
const APIVersion = "v1"

// State is what the admin API answers on PathState and the page shows:
// the state of one instance. It is plain data; its JSON form is the API.
type State struct {
	APIVersion string    `json:"api_version"`
	Time       time.Time `json:"time"`
	Build      Build     `json:"build"`
	Health     Health    `json:"health"`
	// Breakers are the circuit breakers of the policies (WithPolicies).
	Breakers []resilience.BreakerState `json:"breakers"`
	// Policies are the executors with their totals and retry budget.
	Policies []resilience.Snapshot `json:"policies"`
	// Services are the downstream services of the monitored clients.
	Services []client.ServiceState `json:"services"`
	// Consumers are the message consumers, from their metrics.
	Consumers []ConsumerState `json:"consumers"`
	// Config is the configuration, nil without WithConfig.
	Config *ConfigState `json:"config,omitempty"`
	// Callers are the callers seen by the caller limiter, nil without
	// WithCallers.
	Callers *CallersState `json:"callers,omitempty"`
	// Profiling is the automatic profiler's state and captures.
	Profiling ProfilingState `json:"profiling"`
}

// Health is the service's readiness.
type Health struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
}

// ConsumerState is one message consumer (a stream and durable), from the
// consumer metrics: the counts since the process started.
type ConsumerState struct {
	Stream       string `json:"stream"`
	Durable      string `json:"durable"`
	Processed    uint64 `json:"processed"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`
	Duplicates   uint64 `json:"duplicates"`
	// InFlight is how many messages its handlers are running now.
	InFlight int64 `json:"in_flight"`
}

// ConfigState is the configuration's sources, its rejected changes and
// its values now, secrets redacted.
type ConfigState struct {
	Stale      bool                 `json:"stale"`
	Sources    []config.SourceState `json:"sources"`
	Rejections []Rejection          `json:"rejections"`
	Values     map[string]any       `json:"values"`
}

// Rejection is a rejected configuration change (config.Rejection).
type Rejection struct {
	Time   time.Time `json:"time"`
	Prefix string    `json:"prefix,omitempty"`
	Layer  string    `json:"layer,omitempty"`
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
}

// CallersState is who calls the service: each caller identity seen, with
// its rate since the previous look at the state and the limits that apply.
type CallersState struct {
	Limits   resilience.CallerLimits `json:"limits"`
	Rejected uint64                  `json:"rejected"`
	Callers  []CallerState           `json:"callers"`
}

// CallerState is one caller.
type CallerState struct {
	Caller string `json:"caller"`
	Calls  uint64 `json:"calls"`
	// Rate is its requests per second over the interval since the state
	// was last taken (0 the first time).
	Rate float64 `json:"rate"`
}

// State returns the current state.
func (s *Server) State() State {
	st := State{APIVersion: APIVersion, Time: time.Now(), Build: s.o.build,
		Breakers: []resilience.BreakerState{}, Policies: []resilience.Snapshot{},
		Services: []client.ServiceState{}, Consumers: []ConsumerState{}}
	st.Health.Ready, st.Health.Reason = s.ready()
	for _, r := range s.o.policies {
		st.Breakers = append(st.Breakers, r.Breakers()...)
		st.Policies = append(st.Policies, r.Snapshot()...)
	}
	if s.o.clients != nil {
		st.Services = append(st.Services, s.o.clients.Snapshot()...)
	}
	if s.o.metrics != nil {
		st.Consumers = consumers(s.o.metrics)
	}
	if c := s.o.cfg; c != nil {
		cs := &ConfigState{Stale: c.Stale(), Sources: c.Sources(), Rejections: []Rejection{},
			Values: redact(c.Snapshot().All(), s.o.redact)}
		for _, r := range c.Rejections() {
			cs.Rejections = append(cs.Rejections, Rejection{Time: r.Time, Prefix: r.Prefix, Layer: r.Layer, Key: r.Key, Reason: r.Reason})
		}
		st.Config = cs
	}
	if l := s.o.callers; l != nil {
		st.Callers = &CallersState{Limits: l.Limits(), Rejected: l.Rejected(), Callers: s.rates.update(l.Callers(), st.Time)}
	}
	st.Profiling = s.prof.State()
	return st
}

func (s *Server) serveState(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.State())
}

// callerRates turns the callers' totals into rates between two looks.
type callerRates struct {
	mu   sync.Mutex
	at   time.Time
	prev map[string]uint64
}

func (c *callerRates) update(callers []resilience.CallerState, now time.Time) []CallerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	dt := now.Sub(c.at).Seconds()
	out := make([]CallerState, 0, len(callers))
	next := make(map[string]uint64, len(callers))
	for _, cs := range callers {
		r := CallerState{Caller: cs.Caller, Calls: cs.Calls}
		if p, ok := c.prev[cs.Caller]; ok && dt > 0 && cs.Calls >= p {
			r.Rate = float64(cs.Calls-p) / dt
		}
		next[cs.Caller] = cs.Calls
		out = append(out, r)
	}
	c.at, c.prev = now, next
	return out
}

// secretWords mark a configuration key as secret.
var secretWords = []string{"password", "passwd", "secret", "token", "credential", "private", "apikey", "api_key", "dsn"}

const redacted = "[redacted]"

// redact returns the flat values with secret keys' values replaced.
func redact(values map[string]any, extra []string) map[string]any {
	words := append(slices.Clone(secretWords), extra...)
	out := make(map[string]any, len(values))
	for k, v := range values {
		out[k] = v
		for _, part := range strings.Split(strings.ToLower(k), ".") {
			if slices.ContainsFunc(words, func(w string) bool { return strings.Contains(part, strings.ToLower(w)) }) {
				out[k] = redacted
				break
			}
		}
	}
	return out
}

// consumer metric names, as the Prometheus exporter translates them.
const (
	promProcessed    = "vitamin_messaging_processed_total"
	promRetries      = "vitamin_messaging_retries_total"
	promDeadLettered = "vitamin_messaging_dead_lettered_total"
	promDuplicates   = "vitamin_messaging_duplicates_total"
	promInFlight     = "vitamin_messaging_in_flight"
	labelStream      = "messaging_destination_name"
	labelDurable     = "messaging_consumer_group_name"
)

// consumers reads the consumers' counts from the metrics.
func consumers(m *Metrics) []ConsumerState {
	mfs, err := m.otel.Gather()
	if err != nil && len(mfs) == 0 {
		return []ConsumerState{}
	}
	byKey := map[[2]string]*ConsumerState{}
	for _, mf := range mfs {
		var field func(*ConsumerState) *uint64
		switch mf.GetName() {
		case promProcessed:
			field = func(c *ConsumerState) *uint64 { return &c.Processed }
		case promRetries:
			field = func(c *ConsumerState) *uint64 { return &c.Retried }
		case promDeadLettered:
			field = func(c *ConsumerState) *uint64 { return &c.DeadLettered }
		case promDuplicates:
			field = func(c *ConsumerState) *uint64 { return &c.Duplicates }
		case promInFlight:
		default:
			continue
		}
		for _, mt := range mf.GetMetric() {
			k := [2]string{label(mt, labelStream), label(mt, labelDurable)}
			c := byKey[k]
			if c == nil {
				c = &ConsumerState{Stream: k[0], Durable: k[1]}
				byKey[k] = c
			}
			if field == nil {
				c.InFlight += int64(mt.GetGauge().GetValue())
				continue
			}
			*field(c) += uint64(mt.GetCounter().GetValue())
		}
	}
	out := make([]ConsumerState, 0, len(byKey))
	for _, k := range slices.SortedFunc(maps.Keys(byKey), func(a, b [2]string) int {
		return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
	}) {
		out = append(out, *byKey[k])
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// buildInfo completes b with the Go build information.
func buildInfo(b Build) Build {
	b.Started = time.Now()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion, b.Module = bi.GoVersion, bi.Main.Path
	if b.Version == "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
