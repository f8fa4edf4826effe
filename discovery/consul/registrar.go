package consul

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// RegistrarConfig holds the settings of a [Registrar]. The zero value gives
// the documented defaults. It is plain data, safe to copy.
type RegistrarConfig struct {
	// ReconcileInterval bounds how long a registration goes without the
	// agent confirming that it still knows the instance. Each
	// registration holds a blocking query on the agent's copy of it
	// (/v1/agent/service/:id), which returns at once when the agent goes
	// away or forgets the instance (a restart), and otherwise after
	// ReconcileInterval — or after the check's Interval, if shorter: an
	// HTTP or gRPC check's status is read then, to be restored with the
	// instance. Default 10s. The client's http.Client must not time out
	// sooner (api.Config leaves its Timeout at zero).
	ReconcileInterval time.Duration `yaml:"reconcile_interval" json:"reconcile_interval"`
	// Backoff is the wait after a failed request to the agent (it cannot
	// be reached, or registering again failed) before the next one; it
	// doubles with each failure in a row up to MaxBackoff, with jitter
	// (between half and all of it). A restarted agent is asked again this
	// often, so that the instance is registered again as soon as the
	// agent answers. Default 100ms.
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps the wait after failed requests. Default 1s, or
	// Backoff if that is longer.
	MaxBackoff time.Duration `yaml:"max_backoff" json:"max_backoff"`
	// DeregisterTimeout bounds how long Deregister waits for the health
	// endpoint to stop listing the instance. Default 10s.
	DeregisterTimeout time.Duration `yaml:"deregister_timeout" json:"deregister_timeout"`
	// RequireLeader makes Deregister's confirmation read from the leader;
	// by default it uses AllowStale, like a [Watcher] does.
	RequireLeader bool `yaml:"require_leader" json:"require_leader"`
}

// Defaults of RegistrarConfig.
const (
	DefaultReconcileInterval   = 10 * time.Second
	DefaultRegistrarBackoff    = 100 * time.Millisecond
	DefaultRegistrarMaxBackoff = time.Second
	DefaultDeregisterTimeout   = 10 * time.Second
)

func (c RegistrarConfig) withDefaults() (RegistrarConfig, error) {
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultRegistrarBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultRegistrarMaxBackoff, c.Backoff)
	}
	if c.DeregisterTimeout == 0 {
		c.DeregisterTimeout = DefaultDeregisterTimeout
	}
	switch {
	case c.ReconcileInterval < 0:
		return c, fielderr.New(discovery.ErrInvalidConfig, "RegistrarConfig.ReconcileInterval", c.ReconcileInterval, "negative", nil)
	case c.Backoff < 0:
		return c, fielderr.New(discovery.ErrInvalidConfig, "RegistrarConfig.Backoff", c.Backoff, "negative", nil)
	case c.MaxBackoff < c.Backoff:
		return c, fielderr.New(discovery.ErrInvalidConfig, "RegistrarConfig.MaxBackoff", c.MaxBackoff,
			fmt.Sprintf("less than Backoff %v", c.Backoff), nil)
	case c.DeregisterTimeout < 0:
		return c, fielderr.New(discovery.ErrInvalidConfig, "RegistrarConfig.DeregisterTimeout", c.DeregisterTimeout, "negative", nil)
	}
	return c, nil
}

// Registrar registers instances with the local Consul agent and keeps them
// registered: it renews TTL checks, and registers an instance again, under
// the same ID, as soon as the agent has forgotten it (a restarted agent
// answers again), with the check status it had: a healthy instance does
// not turn critical because its agent restarted.
//
// The ACL token, TLS settings, datacenter and HTTP transport all come from
// the api.Config the client was built from.
//
// Registrar is safe for concurrent use.
type Registrar struct {
	client *api.Client
	cfg    RegistrarConfig
	log    *slog.Logger

	mu     sync.Mutex
	active map[string]*Registered // by instance ID
}

var _ discovery.Registrar = (*Registrar)(nil)

// NewRegistrar returns a registrar that talks to the agent through client.
// It fails only on invalid settings, with a [*discovery.FieldError]
// matching [discovery.ErrInvalidConfig] that names the field.
func NewRegistrar(client *api.Client, cfg RegistrarConfig, opts ...Option) (*Registrar, error) {
	if client == nil {
		return nil, fielderr.Errorf(discovery.ErrInvalidConfig, "client", "nil")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Registrar{client: client, cfg: cfg, log: buildOptions(opts).logger, active: map[string]*Registered{}}, nil
}

var metaKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// validate applies Consul's own limits on top of discovery's checks.
func validate(in discovery.Instance) error {
	if len(in.Meta) > 64 {
		return fielderr.Errorf(discovery.ErrInvalidRegistration, "Instance.Meta", "%d pairs; Consul allows at most 64", len(in.Meta))
	}
	for k, v := range in.Meta {
		switch {
		case !metaKey.MatchString(k):
			return fielderr.Errorf(discovery.ErrInvalidRegistration, "Instance.Meta["+k+"]", "key must be 1 to 128 letters, digits, '-' or '_'")
		case strings.HasPrefix(k, "consul-"):
			return fielderr.Errorf(discovery.ErrInvalidRegistration, "Instance.Meta["+k+"]", `keys starting with "consul-" are reserved`)
		case len(v) > 512:
			return fielderr.Errorf(discovery.ErrInvalidRegistration, "Instance.Meta["+k+"]", "value is longer than 512 bytes")
		}
	}
	return nil
}

// Register validates reg, checks that its ID is not registered at another
// address, registers the instance with its check (replacing a previous
// registration of the same ID and endpoint), and starts keeping it
// registered. Registering an ID again at the same endpoint through the same
// Registrar supersedes the earlier registration: its Deregister then does
// nothing. A TTL check starts passing; an HTTP or gRPC check starts
// critical until the agent's first probe passes. (When the agent forgets
// the instance later, the registration is restored with the check's last
// status: see [Registrar].)
//
// Bad input fails with a *discovery.FieldError naming the field; an ID
// registered at another endpoint with a *discovery.DuplicateError.
func (r *Registrar) Register(ctx context.Context, reg discovery.Registration) (discovery.Registered, error) {
	reg, err := reg.Normalize()
	if err != nil {
		return nil, err
	}
	if err := validate(reg.Instance); err != nil {
		return nil, err
	}
	in := reg.Instance
	existing, _, err := r.client.Agent().Service(in.ID, (&api.QueryOptions{}).WithContext(ctx))
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("consul: look up instance %q: %w", in.ID, err)
	case existing != nil && (existing.Address != in.Address || existing.Port != in.Port):
		return nil, &discovery.DuplicateError{ID: in.ID,
			Existing:  (discovery.Instance{Address: existing.Address, Port: existing.Port}).Endpoint(),
			Requested: in.Endpoint()}
	}
	h := &Registered{r: r, reg: reg, def: agentRegistration(reg), stop: make(chan struct{}), done: make(chan struct{})}
	if err := h.register(ctx, h.def); err != nil {
		return nil, err
	}
	r.mu.Lock()
	old := r.active[in.ID]
	r.active[in.ID] = h
	r.mu.Unlock()
	if old != nil {
		old.retire()
	}
	r.log.Info("consul: registered", "service", in.Service, "id", in.ID, "endpoint", in.Endpoint(), "check", string(reg.Check.Kind()))
	go h.keep()
	return h, nil
}

func checkID(id string) string { return "service:" + id }

func agentRegistration(reg discovery.Registration) *api.AgentServiceRegistration {
	in := reg.Instance
	def := &api.AgentServiceRegistration{
		ID: in.ID, Name: in.Service, Address: in.Address, Port: in.Port,
		Tags: in.Tags, Meta: in.Meta,
	}
	c := reg.Check
	if c == nil {
		return def
	}
	ac := &api.AgentServiceCheck{CheckID: checkID(in.ID), Name: in.Service + " health"}
	switch c.Kind() {
	case discovery.CheckTTL:
		ac.TTL = c.TTL.String()
		ac.Status = api.HealthPassing
	case discovery.CheckHTTP:
		ac.HTTP, ac.Method = c.HTTP, "GET"
		ac.Interval, ac.TLSSkipVerify = c.Interval.String(), c.TLSSkipVerify
	case discovery.CheckGRPC:
		ac.GRPC, ac.GRPCUseTLS = c.GRPC, c.GRPCUseTLS
		ac.Interval, ac.TLSSkipVerify = c.Interval.String(), c.TLSSkipVerify
	}
	if c.Timeout > 0 {
		ac.Timeout = c.Timeout.String()
	}
	if c.DeregisterCriticalAfter > 0 {
		ac.DeregisterCriticalServiceAfter = c.DeregisterCriticalAfter.String()
	}
	def.Check = ac
	return def
}

// Registered is an instance registered by a [Registrar]. Goroutines keep
// it registered until Deregister.
//
// Registered is safe for concurrent use.
type Registered struct {
	r    *Registrar
	reg  discovery.Registration
	def  *api.AgentServiceRegistration
	stop chan struct{}
	done chan struct{}

	regMu  sync.Mutex // serializes registering again
	gen    uint64     // registrations so far; under regMu
	status string     // the check's last status read from the agent; under regMu

	failing atomic.Bool // the agent could not be reached or refused

	mu           sync.Mutex
	deregistered bool
	err          error
}

var _ discovery.Registered = (*Registered)(nil)

// Instance returns the registered instance, with its defaults filled in.
func (h *Registered) Instance() discovery.Instance { return h.reg.Instance.Clone() }

func (h *Registered) register(ctx context.Context, def *api.AgentServiceRegistration) error {
	err := h.r.client.Agent().ServiceRegisterOpts(def, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: register %q: %w", h.reg.Instance.ID, err)
	}
	return nil
}

// probed reports whether the agent probes the instance (HTTP or gRPC).
func (h *Registered) probed() bool {
	k := h.reg.Check.Kind()
	return k == discovery.CheckHTTP || k == discovery.CheckGRPC
}

// generation returns the number of registrations so far: a request that
// finds the instance gone restores it only if no registration came since
// the request was sent.
func (h *Registered) generation() uint64 {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	return h.gen
}

func (h *Registered) lastStatus() string {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	return h.status
}

func (h *Registered) setStatus(status string) {
	h.regMu.Lock()
	h.status = status
	h.regMu.Unlock()
}

// restore registers the instance again after a request sent at generation
// gen found it gone, unless a registration came since. An HTTP or gRPC
// check that was passing at the last status read starts passing again,
// instead of critical until the agent's first probe: the instance is
// alive, it is the agent that forgot it.
func (h *Registered) restore(ctx context.Context, gen uint64) error {
	h.regMu.Lock()
	defer h.regMu.Unlock()
	if h.gen != gen {
		return nil
	}
	in, def := h.reg.Instance, h.def
	if h.probed() && h.status == api.HealthPassing {
		d, c := *def, *def.Check
		c.Status = api.HealthPassing
		d.Check = &c
		def = &d
	}
	status := "" // no check
	if def.Check != nil {
		status = cmp.Or(def.Check.Status, api.HealthCritical)
	}
	h.r.log.Warn("consul: the agent forgot the instance; registering it again", "service", in.Service, "id", in.ID, "check_status", status)
	if err := h.register(ctx, def); err != nil {
		return err
	}
	h.gen++
	h.r.log.Info("consul: registered again", "service", in.Service, "id", in.ID)
	return nil
}

// note logs when the agent stops or starts answering.
func (h *Registered) note(err error) {
	in := h.reg.Instance
	switch {
	case err != nil && h.failing.CompareAndSwap(false, true):
		h.r.log.Warn("consul: cannot keep the instance registered", "service", in.Service, "id", in.ID, "error", err)
	case err == nil && h.failing.CompareAndSwap(true, false):
		h.r.log.Info("consul: agent reachable again", "service", in.Service, "id", in.ID)
	}
}

// keep keeps the instance registered until Deregister: it follows the
// agent's copy of the registration and, for a TTL check, renews it.
func (h *Registered) keep() {
	defer close(h.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	if h.reg.Check.Kind() == discovery.CheckTTL {
		wg.Go(func() { h.heartbeat(ctx) })
	}
	h.follow(ctx)
	wg.Wait()
}

// errGone stands for the agent's 404 when it does not know the instance.
var errGone = api.StatusError{Code: http.StatusNotFound, Body: "unknown service ID"}

// follow holds a blocking query on the agent's copy of the registration.
// The query returns when the definition changes, after its wait (then an
// HTTP or gRPC check's status is read), at once with an error when the
// agent goes away — then it is asked again with backoff — and with 404
// when the agent has forgotten the instance: then it is registered again
// at once.
func (h *Registered) follow(ctx context.Context) {
	in, agent := h.reg.Instance, h.r.client.Agent()
	wait := h.r.cfg.ReconcileInterval
	probed := h.probed()
	if probed {
		wait = min(wait, h.reg.Check.Interval)
	}
	bo := backoff.Backoff{Initial: h.r.cfg.Backoff, Max: h.r.cfg.MaxBackoff}
	hash, failures := "", 0
	for {
		gen := h.generation()
		_, meta, err := agent.Service(in.ID, (&api.QueryOptions{WaitHash: hash, WaitTime: wait}).WithContext(ctx))
		reset := false // the agent came back with the check reset to critical
		switch {
		case err == nil && probed:
			var info *api.AgentServiceChecksInfo
			var status string
			status, info, err = agent.AgentHealthServiceByIDOpts(in.ID, (&api.QueryOptions{}).WithContext(ctx))
			switch {
			case err == nil && info == nil:
				err = errGone
			case err == nil:
				reset = failures > 0 && status == api.HealthCritical && h.lastStatus() == api.HealthPassing
				if !reset {
					h.setStatus(status)
				}
			}
		case err == nil && failures > 0 && h.reg.Check.Kind() == discovery.CheckTTL:
			// An agent that restarted with its data directory restores the
			// check critical: renew it now, not at the next heartbeat.
			err = agent.UpdateTTLOpts(checkID(in.ID), "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		}
		if ctx.Err() != nil {
			return
		}
		hash = ""
		switch {
		case isNotFound(err):
			err = h.restore(ctx, gen)
		case reset:
			// An agent that restarted with its data directory restores
			// the instance with its check critical until the first probe:
			// register it again as it was, passing.
			h.r.log.Warn("consul: the agent came back with the instance's check reset to critical", "service", in.Service, "id", in.ID)
			err = h.restore(ctx, gen)
		case err == nil && meta != nil:
			hash = meta.LastContentHash
		}
		h.note(err)
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if !backoff.Sleep(ctx, bo.Delay(failures)) {
			return
		}
	}
}

// heartbeat renews the TTL check every HeartbeatInterval; when the agent
// answers that it does not know the check (404), the instance is
// registered again.
func (h *Registered) heartbeat(ctx context.Context) {
	agent := h.r.client.Agent()
	t := time.NewTicker(h.reg.Check.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gen := h.generation()
		err := agent.UpdateTTLOpts(checkID(h.reg.Instance.ID), "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		if ctx.Err() != nil {
			return
		}
		if isNotFound(err) {
			err = h.restore(ctx, gen)
		}
		h.note(err)
	}
}

// Deregister stops the heartbeat, removes the instance from the agent and
// waits, with blocking queries on the health endpoint, until the endpoint
// no longer lists it among the passing instances — what watchers read — or
// until ctx ends or the registrar's DeregisterTimeout passes. In that last
// case it returns an error matching [ErrNotConfirmed]; the instance is
// gone from the agent and draining can go ahead. Calling Deregister again
// returns the first call's result.
func (h *Registered) Deregister(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.deregistered {
		return h.err
	}
	h.deregistered = true
	close(h.stop)
	<-h.done
	r := h.r
	r.mu.Lock()
	current := r.active[h.reg.Instance.ID] == h
	if current {
		delete(r.active, h.reg.Instance.ID)
	}
	r.mu.Unlock()
	if current {
		h.err = h.deregister(ctx)
	}
	return h.err
}

// retire stops keeping a superseded registration, without touching the
// agent.
func (h *Registered) retire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.deregistered {
		h.deregistered = true
		close(h.stop)
		<-h.done
	}
}

func (h *Registered) deregister(ctx context.Context) error {
	in := h.reg.Instance
	ctx, cancel := context.WithTimeout(ctx, h.r.cfg.DeregisterTimeout)
	defer cancel()
	err := h.r.client.Agent().ServiceDeregisterOpts(in.ID, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("consul: deregister %q: %w", in.ID, err)
	}
	var index uint64
	for {
		q := &api.QueryOptions{WaitIndex: index, AllowStale: !h.r.cfg.RequireLeader}
		if dl, ok := ctx.Deadline(); ok {
			q.WaitTime = max(time.Until(dl), time.Millisecond)
		}
		entries, meta, err := h.r.client.Health().Service(in.Service, "", true, q.WithContext(ctx))
		if ctx.Err() != nil {
			h.r.log.Warn("consul: deregistered, but watchers may not see it yet", "service", in.Service, "id", in.ID)
			return fmt.Errorf("%w: %q: %w", ErrNotConfirmed, in.ID, ctx.Err())
		}
		if err == nil && !listed(entries, in.ID) {
			h.r.log.Info("consul: deregistered", "service", in.Service, "id", in.ID)
			return nil
		}
		if err != nil {
			index = 0
			select { // the agent may be restarting; ask again soon
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		index = meta.LastIndex
	}
}

func listed(entries []*api.ServiceEntry, id string) bool {
	for _, e := range entries {
		if e.Service != nil && e.Service.ID == id {
			return true
		}
	}
	return false
}
