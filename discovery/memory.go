package discovery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// Memory is an in-memory service registry: a [Registrar] and a [Watcher]
// for single-process systems (a service run on a laptop with nothing
// else, several services in one process) and tests, the way grpc's
// resolver/manual stands beside real resolvers. It applies the same
// self-preservation as the Consul watcher, and lets a test mark instances
// unhealthy ([Memory.SetHealthy]) or the whole registry unreachable
// ([Memory.SetUnreachable]) to see how callers react. The test kit's
// vitamintest.Registry is this type.
//
// Checks given at registration are validated but not run: an instance is
// healthy until SetHealthy says otherwise.
//
// Memory is safe for concurrent use. The zero value is not usable; call
// [NewMemory].
type Memory struct {
	sp     SelfPreservation
	logger *slog.Logger

	mu          sync.Mutex
	entries     map[string]*memEntry // by instance ID
	services    map[string]*memService
	unreachable error
	gen         uint64
	closed      bool
}

type memEntry struct {
	in      Instance
	healthy bool
	gen     uint64
}

type memService struct {
	feed          *Feed
	guard         *Guard
	lastConfirmed time.Time
	confirm       *time.Timer // pending confirming read, if any
}

var (
	_ Registrar = (*Memory)(nil)
	_ Watcher   = (*Memory)(nil)
)

// MemoryConfig holds the settings of a [Memory]. The zero value gives
// the defaults of [SelfPreservation].
type MemoryConfig struct {
	// SelfPreservation says when an answer with far fewer instances is
	// served, as for the Consul watcher.
	SelfPreservation SelfPreservation `yaml:"self_preservation" json:"self_preservation"`
}

// MemoryOption configures a [Memory] with what only code can give; it
// is applied once, by [NewMemory].
type MemoryOption func(*Memory)

// WithLogger makes the registry log self-preservation decisions and
// reachability changes to l. Nil (the default) is silent.
func WithLogger(l *slog.Logger) MemoryOption { return func(r *Memory) { r.logger = l } }

// NewMemory returns an empty registry. It fails only when cfg holds an
// invalid setting, with a [*FieldError] matching
// [ErrInvalidConfig] that names the field.
func NewMemory(cfg MemoryConfig, opts ...MemoryOption) (*Memory, error) {
	r := &Memory{sp: cfg.SelfPreservation, entries: map[string]*memEntry{}, services: map[string]*memService{}}
	for _, o := range opts {
		o(r)
	}
	sp, err := r.sp.WithDefaults()
	var fe *FieldError
	if errors.As(err, &fe) {
		return nil, fielderr.New(ErrInvalidConfig, "MemoryConfig."+fe.Field, fe.Value, fe.Reason, fe.Err)
	}
	r.sp = sp
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Register validates reg and adds its instance. Registering an ID again at
// the same endpoint replaces the instance's tags and metadata; at another
// endpoint it fails with [ErrDuplicateInstance].
func (r *Memory) Register(ctx context.Context, reg Registration) (Registered, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reg, err := reg.Normalize()
	if err != nil {
		return nil, err
	}
	in := reg.Instance
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if old, ok := r.entries[in.ID]; ok && old.in.Endpoint() != in.Endpoint() {
		return nil, &DuplicateError{ID: in.ID, Existing: old.in.Endpoint(), Requested: in.Endpoint()}
	}
	if old, ok := r.entries[in.ID]; ok && old.in.Service != in.Service {
		delete(r.entries, in.ID)
		r.publishLocked(old.in.Service)
	}
	r.gen++
	r.entries[in.ID] = &memEntry{in: in, healthy: true, gen: r.gen}
	r.publishLocked(in.Service)
	return &memRegistered{r: r, in: in.Clone(), gen: r.gen}, nil
}

// Watch follows the healthy instances of service. All watches of a
// service share one feed.
func (r *Memory) Watch(ctx context.Context, service string, opts ...WatchOption) (Watch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if service == "" {
		return nil, fielderr.Errorf(ErrInvalidRegistration, "service", "service name is empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	s := r.serviceLocked(service)
	return s.feed.Watch(nil, opts...)
}

// SetHealthy marks the instance with the given ID healthy or not, as a
// passing or failing health check would. It reports whether the ID is
// registered.
func (r *Memory) SetHealthy(id string, healthy bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || r.closed {
		return false
	}
	if e.healthy != healthy {
		e.healthy = healthy
		r.publishLocked(e.in.Service)
	}
	return true
}

// SetUnreachable makes the registry behave as a backend that cannot be
// reached when err is not nil: watches keep the last good set, marked
// stale with err. SetUnreachable(nil) makes it reachable again.
func (r *Memory) SetUnreachable(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if (r.unreachable == nil) != (err == nil) {
		r.logger.Warn("discovery: memory registry reachability changed", "unreachable", err != nil, "error", err)
	}
	r.unreachable = err
	for name := range r.services {
		r.publishLocked(name)
	}
}

// Instances returns the healthy instances of service as the registry
// holds them now, without self-preservation, sorted by ID.
func (r *Memory) Instances(service string) []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.healthyLocked(service)
}

// Close ends all watches (their Next returns [ErrClosed]) and makes
// further calls fail. It always returns nil.
func (r *Memory) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	for _, s := range r.services {
		if s.confirm != nil {
			s.confirm.Stop()
		}
		s.feed.Close()
	}
	return nil
}

func (r *Memory) serviceLocked(name string) *memService {
	s, ok := r.services[name]
	if !ok {
		g, _ := NewGuard(r.sp) // r.sp was validated by NewMemory
		s = &memService{feed: NewFeed(name), guard: g}
		r.services[name] = s
		r.publishLocked(name)
	}
	return s
}

func (r *Memory) healthyLocked(service string) []Instance {
	var out []Instance
	for _, e := range r.entries {
		if e.in.Service == service && e.healthy {
			out = append(out, e.in)
		}
	}
	SortInstances(out)
	return out
}

// publishLocked reads the service's healthy set as a backend read would,
// runs it through self-preservation and publishes the result.
func (r *Memory) publishLocked(name string) {
	s, ok := r.services[name]
	if !ok {
		return // nobody watches it yet; the first Watch reads it
	}
	if r.unreachable != nil {
		good, _ := s.guard.Good()
		s.feed.Publish(Snapshot{Instances: good, Stale: true, LastConfirmed: s.lastConfirmed, Err: r.unreachable})
		return
	}
	s.lastConfirmed = time.Now()
	v := s.guard.Observe(r.healthyLocked(name))
	switch {
	case v.Held:
		r.logger.Warn("discovery: self-preservation holds the last good set", "service", name,
			"previous", v.Previous, "answer", len(r.healthyLocked(name)))
		if s.confirm == nil {
			s.confirm = time.AfterFunc(r.sp.ConfirmAfter, func() {
				r.mu.Lock()
				defer r.mu.Unlock()
				s.confirm = nil
				if !r.closed {
					r.publishLocked(name)
				}
			})
		}
	case v.Confirmed:
		r.logger.Warn("discovery: self-preservation confirmed a smaller set", "service", name,
			"previous", v.Previous, "now", len(v.Serve))
	}
	s.feed.Publish(Snapshot{Instances: v.Serve, Preserved: v.Held, LastConfirmed: s.lastConfirmed})
}

type memRegistered struct {
	r   *Memory
	in  Instance
	gen uint64
}

func (m *memRegistered) Instance() Instance { return m.in.Clone() }

// Deregister removes the instance; watches see the change at once (after
// self-preservation's confirmation if it empties the set).
func (m *memRegistered) Deregister(ctx context.Context) error {
	r := m.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[m.in.ID]; ok && e.gen == m.gen {
		delete(r.entries, m.in.ID)
		r.publishLocked(m.in.Service)
	}
	return nil
}
