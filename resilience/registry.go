package resilience

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Target names what is called: a service and, optionally, one of its
// methods (a gRPC method such as "pkg.Orders/Get"). It is a plain value.
type Target struct {
	Service string
	Method  string
}

// Config is the set of named policies of a Registry: a default for every
// service and overrides by service ("orders") or by service and method
// ("orders/pkg.Orders/Get", the service, a slash, then the method). It is
// plain data, loadable from a file; the Registry keeps its own copy.
type Config struct {
	// Default applies to every service without an override. Each service
	// gets its own executor (and breaker) built from it.
	Default Policy `yaml:"default" json:"default"`
	// Overrides replace Default for a service or a service's method.
	Overrides map[string]Policy `yaml:"overrides,omitempty" json:"overrides,omitempty"`
}

// Validate reports the first invalid field, named by its path such as
// "overrides[orders].retry.max_attempts".
func (c Config) Validate() error {
	if err := c.Default.validate("default."); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(c.Overrides)) {
		if k == "" || strings.HasPrefix(k, "/") {
			return invalid("overrides", k, "key must be a service name or service/method")
		}
		if err := c.Overrides[k].validate("overrides[" + k + "]."); err != nil {
			return err
		}
	}
	return nil
}

// Registry holds the executors of named policies and swaps them atomically
// when the Config changes. Looking up a target is lock-free and does not
// allocate once the target has been seen.
//
// Registry is safe for concurrent use.
type Registry struct {
	opts options
	inst *instruments

	mu  sync.Mutex // serialises Update and the creation of executors
	cur atomic.Pointer[registryState]
}

type registryState struct {
	cfg      Config
	byKey    map[string]*Executor // "service" or "service/method"
	byTarget map[Target]*Executor // lookup cache
}

// NewRegistry validates cfg and returns a registry for it.
func NewRegistry(cfg Config, opts ...Option) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Registry{opts: buildOptions(opts)}
	r.inst = newInstruments(r.opts.meter)
	r.cur.Store(&registryState{cfg: cloneConfig(cfg), byKey: map[string]*Executor{}, byTarget: map[Target]*Executor{}})
	return r, nil
}

func cloneConfig(c Config) Config {
	c.Overrides = maps.Clone(c.Overrides)
	return c
}

// For returns the executor for a target: the override for service/method,
// else the override for service, else the default (one executor per
// service). It never returns nil.
func (r *Registry) For(service, method string) *Executor {
	t := Target{Service: service, Method: method}
	if e, ok := r.cur.Load().byTarget[t]; ok {
		return e
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.cur.Load()
	if e, ok := st.byTarget[t]; ok {
		return e
	}
	key, spec := resolve(st.cfg, t)
	next := &registryState{cfg: st.cfg, byKey: st.byKey, byTarget: maps.Clone(st.byTarget)}
	e, ok := st.byKey[key]
	if !ok {
		e = newExecutor(key, spec, &r.opts, r.inst, nil)
		next.byKey = maps.Clone(st.byKey)
		next.byKey[key] = e
	}
	next.byTarget[t] = e
	r.cur.Store(next)
	return e
}

func resolve(cfg Config, t Target) (string, Policy) {
	if t.Method != "" {
		k := t.Service + "/" + t.Method
		if p, ok := cfg.Overrides[k]; ok {
			return k, p
		}
	}
	if p, ok := cfg.Overrides[t.Service]; ok {
		return t.Service, p
	}
	return t.Service, cfg.Default
}

// Update validates cfg and, if it is valid, swaps it in atomically: calls
// that start afterwards use the new specs, calls in flight finish under the
// old ones. A breaker, bulkhead, rate limiter or budget whose spec did not
// change keeps its state. An invalid cfg is rejected and the current one
// stays.
func (r *Registry) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cloneConfig(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.cur.Load()
	next := &registryState{cfg: cfg, byKey: make(map[string]*Executor, len(st.byKey)), byTarget: map[Target]*Executor{}}
	for key, old := range st.byKey {
		spec, ok := cfg.Overrides[key]
		if !ok {
			if strings.Contains(key, "/") {
				continue // a method override that was removed
			}
			spec = cfg.Default
		}
		next.byKey[key] = newExecutor(key, spec, &r.opts, r.inst, old)
	}
	r.cur.Store(next)
	return nil
}

// Config returns the current configuration.
func (r *Registry) Config() Config { return cloneConfig(r.cur.Load().cfg) }

// Snapshot returns the state of every executor created so far, sorted by name.
func (r *Registry) Snapshot() []Snapshot {
	st := r.cur.Load()
	out := make([]Snapshot, 0, len(st.byKey))
	for _, k := range slices.Sorted(maps.Keys(st.byKey)) {
		out = append(out, st.byKey[k].Snapshot())
	}
	return out
}
