package resilience

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
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
//
// # Spelling an override key
//
// A Registry matches override keys in a canonical form: lower case, with
// ".", "/" and "-" read as "_". So the key "orders/pkg.Orders/Get" in Go
// code and "orders_pkg_orders_get" name the same target. The second
// spelling survives every configuration layer, which split keys at "."
// (package config), turn "/" into "." (its Consul KV source) or lower-case
// them (the environment); write it in lower case everywhere, so that the
// layers merge key by key:
//
//	# a YAML file
//	resilience:
//	  overrides:
//	    orders_pkg_orders_get:
//	      timeout: 2s
//
//	# Consul KV, under the source's prefix
//	resilience/overrides/orders_pkg_orders_get/timeout = 2s
//
//	# the environment, with EnvPrefix "APP_" ("__" is a literal "_")
//	APP_RESILIENCE_OVERRIDES_ORDERS__PKG__ORDERS__GET_TIMEOUT=2s
//
// Executors are still named by the target as For is given it
// ("orders/pkg.Orders/Get"). Two keys with the same canonical form
// ("orders_pkg_Orders_Get" in a file and "orders_pkg_orders_get" from the
// environment) are invalid, and the error names both. A service override
// whose canonical form is that of a service and method (a service named
// "orders_get" and the method "Get" of "orders") matches both; service
// names with "_" are rare, as Consul cannot serve them over DNS.
type Config struct {
	// Default applies to every service without an override. Each service
	// gets its own executor (and breaker) built from it.
	Default Policy `yaml:"default" json:"default"`
	// Overrides replace Default for a service or a service's method,
	// keyed as described above.
	Overrides map[string]Policy `yaml:"overrides,omitempty" json:"overrides,omitempty"`
}

// Validate reports the first invalid field, named by its path such as
// "overrides[orders].retry.max_attempts", or two override keys that name
// the same target.
func (c Config) Validate() error {
	if err := c.Default.validate("default."); err != nil {
		return err
	}
	seen := make(map[string]string, len(c.Overrides))
	for _, k := range slices.Sorted(maps.Keys(c.Overrides)) {
		if k == "" || strings.HasPrefix(k, "/") {
			return invalid("overrides", k, "key must be a service name or service/method")
		}
		if other, dup := seen[canonical(k)]; dup {
			return invalid("overrides", fmt.Sprintf("%q and %q", other, k),
				"name the same target ("+canonical(k)+"); keep one, in lower case")
		}
		seen[canonical(k)] = k
		if err := c.Overrides[k].validate("overrides[" + k + "]."); err != nil {
			return err
		}
	}
	return nil
}

// canonical is the form in which override keys are matched: lower case,
// with ".", "/" and "-" read as "_".
func canonical(key string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '/', '-':
			return '_'
		}
		return unicode.ToLower(r)
	}, key)
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
	cfg       Config
	overrides map[string]Policy    // cfg.Overrides by canonical key
	byKey     map[string]*Executor // "service" or "service/method"
	byTarget  map[Target]*Executor // lookup cache
}

func newState(cfg Config, byKey map[string]*Executor) *registryState {
	st := &registryState{cfg: cloneConfig(cfg), overrides: make(map[string]Policy, len(cfg.Overrides)),
		byKey: byKey, byTarget: map[Target]*Executor{}}
	for k, p := range cfg.Overrides {
		st.overrides[canonical(k)] = p
	}
	return st
}

// NewRegistry validates cfg and returns a registry for it.
func NewRegistry(cfg Config, opts ...Option) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Registry{opts: buildOptions(opts)}
	r.inst = newInstruments(r.opts.meter)
	r.cur.Store(newState(cfg, map[string]*Executor{}))
	return r, nil
}

func cloneConfig(c Config) Config {
	c.Overrides = maps.Clone(c.Overrides)
	return c
}

// For returns the executor for a target: the override for service/method,
// else the override for service, else the default (one executor per
// service). Override keys are matched in their canonical form (see
// Config). It never returns nil. Once a target has been looked up, For
// takes no lock and does not allocate, until the next Update.
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
	key, spec := st.resolve(t)
	next := *st
	next.byTarget = maps.Clone(st.byTarget)
	e, ok := st.byKey[key]
	if !ok {
		e = newExecutor(key, spec, &r.opts, r.inst, nil)
		next.byKey = maps.Clone(st.byKey)
		next.byKey[key] = e
	}
	next.byTarget[t] = e
	r.cur.Store(&next)
	return e
}

// resolve returns the name of t's executor and its policy.
func (st *registryState) resolve(t Target) (string, Policy) {
	if t.Method != "" {
		k := t.Service + "/" + t.Method
		if p, ok := st.overrides[canonical(k)]; ok {
			return k, p
		}
	}
	if p, ok := st.overrides[canonical(t.Service)]; ok {
		return t.Service, p
	}
	return t.Service, st.cfg.Default
}

// Update validates cfg and, if it is valid, swaps it in atomically: calls
// that start afterwards use the new specs, calls in flight finish under the
// old ones. A breaker, bulkhead, rate limiter or budget whose spec did not
// change keeps its state. An invalid cfg is rejected and the current one
// stays. With package config, config.Follow(cfg, "resilience",
// registry.Update) makes the registry follow the configuration.
func (r *Registry) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.cur.Load()
	next := newState(cfg, make(map[string]*Executor, len(st.byKey)))
	for key, old := range st.byKey {
		spec, ok := next.overrides[canonical(key)]
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
