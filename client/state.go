package client

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitamin-go/vitamin/discovery"
)

// Monitor collects the balancer state of the clients made with
// WithMonitor, for an operator's page (package service/admin): each
// service's instances, their latency estimate, load and ejection, the
// subset routing and the discovery watch. Reading it takes the clients'
// locks briefly and never touches the pick path.
//
// Monitor is safe for concurrent use; its zero value is not: use NewMonitor.
type Monitor struct {
	mu    sync.Mutex
	cores []*core
}

// NewMonitor returns an empty Monitor.
func NewMonitor() *Monitor { return &Monitor{} }

// WithMonitor adds the client to m, until the client is closed.
func WithMonitor(m *Monitor) Option { return option(func(o *options) { o.monitor = m }) }

func (m *Monitor) add(c *core) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.cores = append(m.cores, c)
	m.mu.Unlock()
}

// live returns the cores of clients not closed yet, forgetting the others.
func (m *Monitor) live() []*core {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cores = slices.DeleteFunc(m.cores, func(c *core) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed
	})
	return slices.Clone(m.cores)
}

// ServiceState is what one client knows of the service it calls. It is a
// plain value.
type ServiceState struct {
	// Service is the called service; Kind is "grpc" or "http".
	Service string `json:"service"`
	Kind    string `json:"kind"`
	// Discovery is the state of the client's watch.
	Discovery WatchState `json:"discovery"`
	// Algorithm is the pick algorithm; Zone the preferred zone, if any.
	Algorithm string `json:"algorithm"`
	Zone      string `json:"zone,omitempty"`
	// Canary, Pin and Sticky describe subset routing, when set.
	Canary *CanaryState `json:"canary,omitempty"`
	// Stage is the stage subset ("key=value"), which takes pinned calls
	// only, when set.
	Stage  string `json:"stage,omitempty"`
	Pin    string `json:"pin_meta_key,omitempty"`
	Sticky string `json:"sticky_meta_key,omitempty"`
	// Ejected is how many instances are ejected now.
	Ejected int `json:"ejected"`
	// Instances are the instances the client balances over, sorted by ID.
	Instances []InstanceState `json:"instances"`
}

// WatchState is the last snapshot the client's discovery watch delivered.
type WatchState struct {
	// Seen is false until the watch delivered a first snapshot.
	Seen bool `json:"seen"`
	// Stale is set while the backend cannot be reached (the instances are
	// the last confirmed set); Preserved while self-preservation holds
	// the last good set; Err is the backend's last error while Stale.
	Stale     bool   `json:"stale"`
	Preserved bool   `json:"preserved"`
	Err       string `json:"error,omitempty"`
	// LastConfirmed is when the backend last confirmed the set, as of the
	// last snapshot that changed something.
	LastConfirmed time.Time `json:"last_confirmed"`
}

// CanaryState is the canary subset of a service.
type CanaryState struct {
	Key    string  `json:"key"`
	Value  string  `json:"value"`
	Weight float64 `json:"weight"`
	// Instances is how many instances are canaries.
	Instances int `json:"instances"`
	// Guard is the state of its confidence guard, if it has one.
	Guard *GuardState `json:"guard,omitempty"`
}

// GuardState is the state of a canary's confidence guard.
type GuardState struct {
	// Window is the number of the window being filled (from 0), Calls
	// the canary calls it holds so far, of Size.
	Window int    `json:"window"`
	Calls  uint64 `json:"calls"`
	Size   uint64 `json:"size"`
	// Pulled says why the guard pulled the canary; nil while it routes
	// to it.
	Pulled *GuardEvent `json:"pulled,omitempty"`
}

// InstanceState is one instance as the balancer sees it.
type InstanceState struct {
	ID      string            `json:"id"`
	Address string            `json:"address"`
	Meta    map[string]string `json:"meta,omitempty"`
	// Ready is false for a gRPC instance whose connection is not ready.
	Ready bool `json:"ready"`
	// Latency is the balancer's latency estimate (peak EWMA).
	Latency time.Duration `json:"latency"`
	// InFlight is the number of calls to it in flight; Calls the number
	// it was picked for.
	InFlight int64  `json:"in_flight"`
	Calls    uint64 `json:"calls"`
	// Ejected is set while outlier detection keeps it out of rotation,
	// until EjectedUntil, for EjectReason; Ejections counts its recent
	// ejections (the next one lasts longer).
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	EjectReason  string    `json:"eject_reason,omitempty"`
	Ejections    int       `json:"ejections"`
}

// Snapshot returns the state of each client of m, sorted by service and kind.
func (m *Monitor) Snapshot() []ServiceState {
	out := []ServiceState{}
	for _, c := range m.live() {
		out = append(out, c.state())
	}
	slices.SortStableFunc(out, func(a, b ServiceState) int {
		if a.Service != b.Service {
			return strings.Compare(a.Service, b.Service)
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out
}

// ErrNotEjected is returned by ClearEjection when no client of the
// service has that instance ejected.
var ErrNotEjected = errors.New("client: instance not ejected")

// ClearEjection puts the instance id of service back in rotation in every
// client of m that has it ejected, as an operator's action. It returns an
// error matching ErrNotEjected when none had it ejected.
func (m *Monitor) ClearEjection(service, id string) error {
	cleared := false
	for _, c := range m.live() {
		if c.service != service {
			continue
		}
		c.mu.Lock()
		var hit *endpoint
		for _, e := range c.eps {
			if e.inst.ID == id && e.ejected {
				hit = e
				if e.timer != nil {
					e.timer.Stop()
				}
			}
		}
		c.mu.Unlock()
		if hit != nil {
			c.unEject(hit)
			cleared = true
		}
	}
	if !cleared {
		return fmt.Errorf("%w: %s of %s", ErrNotEjected, id, service)
	}
	return nil
}

func (c *core) noteWatch(s discovery.Snapshot) {
	s.Instances = nil
	c.lastWatch.Store(&s)
}

func (c *core) state() ServiceState {
	b := c.bal.Load()
	kind := "http"
	if c.needConn {
		kind = "grpc"
	}
	st := ServiceState{Service: c.service, Kind: kind, Algorithm: string(b.Algorithm), Zone: b.Zone, Instances: []InstanceState{}}
	if w := c.lastWatch.Load(); w != nil {
		st.Discovery = WatchState{Seen: true, Stale: w.Stale, Preserved: w.Preserved, LastConfirmed: w.LastConfirmed}
		if w.Err != nil {
			st.Discovery.Err = w.Err.Error()
		}
	}
	if p := b.Pin; p != nil {
		st.Pin = p.MetaKey
	}
	if sg := b.Stage; sg != nil {
		st.Stage = sg.Key + "=" + sg.Value
	}
	if s := b.Sticky; s != nil {
		st.Sticky = s.MetaKey
	}
	if cn := b.Canary; cn != nil {
		st.Canary = &CanaryState{Key: cn.Key, Value: cn.Value, Weight: cn.Weight}
		if g := c.guard.Load(); g != nil {
			w := g.win.Load()
			st.Canary.Guard = &GuardState{Window: w.n, Calls: w.sub[1].calls.Load(), Size: w.size, Pulled: g.pulled.Load()}
		}
	}
	now, r := c.now(), c.rates()
	c.mu.Lock()
	st.Ejected = c.ejected
	for _, e := range c.eps {
		is := InstanceState{
			ID: e.inst.ID, Address: e.addr, Meta: e.inst.Meta, Ready: e.ready,
			InFlight: e.inflight.Load(), Calls: e.calls.Load(),
			Ejected: e.ejected, Ejections: e.ejections,
		}
		if cost := e.cost(now, r); !math.IsInf(cost, 0) && !math.IsNaN(cost) {
			is.Latency = time.Duration(cost / float64(max(e.inflight.Load(), 0)+1))
		}
		if e.ejected {
			is.EjectedUntil, is.EjectReason = e.ejectedTo, e.ejectWhy
		}
		if st.Canary != nil && e.inst.Meta[st.Canary.Key] == st.Canary.Value {
			st.Canary.Instances++
		}
		st.Instances = append(st.Instances, is)
	}
	c.mu.Unlock()
	slices.SortFunc(st.Instances, func(a, b InstanceState) int { return strings.Compare(a.ID, b.ID) })
	return st
}

func failureWhy(o outcome) string {
	if o == outcomeRefused {
		return "connection refused"
	}
	return "consecutive failures"
}
