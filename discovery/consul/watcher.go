package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/consulquery"
	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// WatcherConfig holds the settings of a [Watcher]. The zero value gives the
// documented defaults. It is plain data, safe to copy.
type WatcherConfig struct {
	// Datacenter to watch; empty means the agent's own.
	Datacenter string `yaml:"datacenter" json:"datacenter"`
	// WaitTime is the longest a blocking query waits for a change before
	// the agent answers anyway. Default 1m; Consul caps it at 10m. The
	// client's http.Client must not time out sooner (api.Config leaves
	// its Timeout at zero).
	WaitTime time.Duration `yaml:"wait_time" json:"wait_time"`
	// RequireLeader makes every read go to the leader. By default reads
	// use AllowStale, so that any server can answer and a watch keeps
	// working while the cluster has no leader.
	RequireLeader bool `yaml:"require_leader" json:"require_leader"`
	// Backoff is the wait after a failed read; it doubles with each
	// failure in a row up to MaxBackoff, with jitter (between half and
	// all of it). Default 100ms.
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps the wait after failed reads. Default 5s, or Backoff
	// if that is longer.
	MaxBackoff time.Duration `yaml:"max_backoff" json:"max_backoff"`
	// LeaderCheck is how often, while it has watches, the watcher asks a
	// server (a stale read, answered by any server) whether it is in
	// contact with a leader. While one is not — the servers are electing
	// a leader, or the one they follow is gone — every watch serves its
	// set marked Stale with a *NoLeaderError: the set cannot change, and
	// nothing registered or deregistered meanwhile reaches it. Default
	// 1s; negative switches the check off.
	LeaderCheck time.Duration `yaml:"leader_check" json:"leader_check"`
	// MaxLastContact is how long a server may go without hearing from its
	// leader before the leader check reports no leader. Default 2s (Raft
	// heartbeats come every half second with Consul's default timing;
	// followers start an election after five seconds without one).
	MaxLastContact time.Duration `yaml:"max_last_contact" json:"max_last_contact"`
	// SelfPreservation says when an answer with far fewer instances is
	// served, and how long after an agent restart answers that lack
	// instances are held (RestartGrace, default 5s); see
	// [discovery.SelfPreservation].
	SelfPreservation discovery.SelfPreservation `yaml:"self_preservation" json:"self_preservation"`
}

// Defaults of WatcherConfig.
const (
	DefaultWaitTime   = time.Minute
	DefaultBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second

	DefaultLeaderCheck    = time.Second
	DefaultMaxLastContact = 2 * time.Second
)

func (c WatcherConfig) withDefaults() (WatcherConfig, error) {
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.Backoff)
	}
	if c.LeaderCheck == 0 {
		c.LeaderCheck = DefaultLeaderCheck
	}
	if c.MaxLastContact == 0 {
		c.MaxLastContact = DefaultMaxLastContact
	}
	switch {
	case c.WaitTime < 0 || c.WaitTime > consulquery.MaxWaitTime:
		return c, fielderr.New(discovery.ErrInvalidConfig, "WatcherConfig.WaitTime", c.WaitTime, "not in (0, 10m]", nil)
	case c.MaxLastContact < 0:
		return c, fielderr.New(discovery.ErrInvalidConfig, "WatcherConfig.MaxLastContact", c.MaxLastContact, "negative", nil)
	case c.Backoff < 0:
		return c, fielderr.New(discovery.ErrInvalidConfig, "WatcherConfig.Backoff", c.Backoff, "negative", nil)
	case c.MaxBackoff < c.Backoff:
		return c, fielderr.New(discovery.ErrInvalidConfig, "WatcherConfig.MaxBackoff", c.MaxBackoff,
			fmt.Sprintf("less than Backoff %v", c.Backoff), nil)
	}
	sp, err := c.SelfPreservation.WithDefaults()
	var fe *discovery.FieldError
	if errors.As(err, &fe) {
		return c, fielderr.New(discovery.ErrInvalidConfig, "WatcherConfig."+fe.Field, fe.Value, fe.Reason, fe.Err)
	}
	c.SelfPreservation = sp
	return c, nil
}

// healthFunc reads the passing instances of a service; it is
// Health().Service in production and a scripted sequence in one test. q
// carries ctx.
type healthFunc func(ctx context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)

// Watcher follows the passing instances of services through the Consul
// health endpoint with blocking queries. However many watches a process
// opens on one service, they share a single query loop; it stops when the
// last of them is closed.
//
// The loop starts each query from the LastIndex of the previous answer,
// starts over from index 0 when the index goes backwards (a restored or
// restarted server) or after an error, backs off with jitter after errors,
// applies self-preservation, and while the agent cannot be reached serves
// the last good set marked stale with the time it was last confirmed.
// When the index went backwards, or the agent answers again after failing,
// it holds the last good set, marked Preserved, for up to
// SelfPreservation.RestartGrace or until every instance is back (their
// registrars register them again), so that a restarted agent's empty
// answer never empties the set.
//
// Watcher is safe for concurrent use.
type Watcher struct {
	cfg    WatcherConfig
	log    *slog.Logger
	health healthFunc
	leader leaderCheck // nil: no leader check

	noLeader atomic.Pointer[NoLeaderError] // set while the check finds no leader

	mu      sync.Mutex
	loops   map[string]*serviceLoop
	closed  bool
	monitor *monitor // runs while there are loops
}

var _ discovery.Watcher = (*Watcher)(nil)

type serviceLoop struct {
	feed   *discovery.Feed
	refs   int
	cancel context.CancelFunc
	done   chan struct{}

	pubMu   sync.Mutex // serialises publishing, by the loop and the leader check
	last    discovery.Snapshot
	hasLast bool
}

// NewWatcher returns a watcher that reads through client. It fails only on
// invalid settings, with a [*discovery.FieldError] matching
// [discovery.ErrInvalidConfig] that names the field.
func NewWatcher(client *api.Client, cfg WatcherConfig, opts ...Option) (*Watcher, error) {
	if client == nil {
		return nil, fielderr.Errorf(discovery.ErrInvalidConfig, "client", "nil")
	}
	h := client.Health()
	w, err := newWatcher(func(_ context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return h.Service(service, "", true, q)
	}, cfg, opts...)
	if err != nil {
		return nil, err
	}
	w.leader = kvLeaderCheck(client.KV(), w.cfg.MaxLastContact)
	return w, nil
}

func newWatcher(health healthFunc, cfg WatcherConfig, opts ...Option) (*Watcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, log: buildOptions(opts).logger, health: health, loops: map[string]*serviceLoop{}}, nil
}

// Watch follows the passing instances of service that match opts. The
// first Next returns once the first read has answered (or failed: then
// the snapshot is stale and empty). ctx bounds only this call. Watches of
// one service share one query loop whatever their filters; filtering
// happens in the process.
func (w *Watcher) Watch(ctx context.Context, service string, opts ...discovery.WatchOption) (discovery.Watch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if service == "" {
		return nil, fielderr.Errorf(discovery.ErrInvalidRegistration, "service", "service name is empty")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, discovery.ErrClosed
	}
	l, ok := w.loops[service]
	if !ok {
		lctx, cancel := context.WithCancel(context.Background())
		l = &serviceLoop{feed: discovery.NewFeed(service), cancel: cancel, done: make(chan struct{})}
		w.loops[service] = l
		guard, _ := discovery.NewGuard(w.cfg.SelfPreservation) // validated by NewWatcher
		go w.run(lctx, service, l, guard)
		w.startMonitorLocked()
	}
	watch, err := l.feed.Watch(func() { w.release(service, l) }, opts...)
	if err != nil {
		return nil, err
	}
	l.refs++
	return watch, nil
}

// release drops one reference to l and stops its loop after the last.
func (w *Watcher) release(service string, l *serviceLoop) {
	w.mu.Lock()
	l.refs--
	last := l.refs == 0 && w.loops[service] == l
	var m *monitor
	if last {
		delete(w.loops, service)
		if len(w.loops) == 0 {
			m, w.monitor = w.monitor, nil
		}
	}
	w.mu.Unlock()
	if last {
		l.cancel()
		l.feed.Close()
		<-l.done
	}
	m.stop()
}

// Close stops every query loop and ends all watches: their Next returns
// [discovery.ErrClosed]. It waits for the loops to exit and always returns
// nil.
func (w *Watcher) Close() error {
	w.mu.Lock()
	loops, m := w.loops, w.monitor
	w.loops, w.closed, w.monitor = map[string]*serviceLoop{}, true, nil
	w.mu.Unlock()
	m.stop()
	for _, l := range loops {
		l.cancel()
		l.feed.Close()
	}
	for _, l := range loops {
		<-l.done
	}
	return nil
}

// run is the one query loop of a service.
func (w *Watcher) run(ctx context.Context, service string, l *serviceLoop, guard *discovery.Guard) {
	defer close(l.done)
	log := w.log.With("service", service)
	loop := consulquery.New(consulquery.Config{
		Datacenter: w.cfg.Datacenter,
		AllowStale: !w.cfg.RequireLeader,
		WaitTime:   w.cfg.WaitTime,
		Backoff:    w.backoff(),
		What:       "the service's health",
		Logger:     log,
	}, func(ctx context.Context, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return w.health(ctx, service, q)
	})
	holding := false // in a restart grace
	for {
		r, ok := loop.Next(ctx)
		if !ok {
			return
		}
		if r.Err != nil {
			good, _ := guard.Good()
			w.publish(l, discovery.Snapshot{Instances: good, Stale: true, LastConfirmed: r.LastConfirmed, Err: r.Err})
			continue
		}
		if r.Reset || r.Recovered {
			// The agent may have restarted and forgotten what its
			// registrars are about to register again.
			guard.Restarted()
		}
		v := guard.Observe(instances(r.Answer))
		switch {
		case v.Grace > 0 && !holding:
			log.Warn("consul: the agent may have lost its state; keeping the last good set until its instances are back",
				"previous", v.Previous, "answer", len(r.Answer), "grace", v.Grace)
		case holding && v.Restored:
			log.Info("consul: the instances are back", "now", len(v.Serve))
		case holding && v.Grace == 0:
			log.Warn("consul: the restart grace ran out before every instance was back; judging answers as usual",
				"previous", v.Previous, "answer", len(r.Answer))
		}
		switch {
		case v.Held && v.Grace == 0:
			log.Warn("consul: self-preservation keeps the last good set until a second read confirms the drop",
				"previous", v.Previous, "answer", len(r.Answer))
		case v.Confirmed:
			log.Warn("consul: self-preservation confirmed the drop", "previous", v.Previous, "now", len(v.Serve))
		}
		holding = v.Grace > 0
		w.publish(l, discovery.Snapshot{Instances: v.Serve, Preserved: v.Held, LastConfirmed: r.LastConfirmed})
		switch {
		case v.Grace > 0:
			// Hear of the next change at once, but look again when the
			// grace ends.
			loop.WaitAtMost(v.Grace)
		case v.Held:
			// Read again soon, without waiting for a change.
			loop.Reread(guard.Config().ConfirmAfter)
		}
	}
}

// backoff is the wait after failed reads.
func (w *Watcher) backoff() backoff.Backoff {
	return backoff.Backoff{Initial: w.cfg.Backoff, Max: w.cfg.MaxBackoff}
}

// instances turns health entries into sorted instances. An instance
// registered without an address takes its node's.
func instances(entries []*api.ServiceEntry) []discovery.Instance {
	out := make([]discovery.Instance, 0, len(entries))
	for _, e := range entries {
		s := e.Service
		if s == nil {
			continue
		}
		addr := s.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		out = append(out, discovery.Instance{
			ID: s.ID, Service: s.Service, Address: addr, Port: s.Port,
			Tags: slices.Clone(s.Tags), Meta: maps.Clone(s.Meta),
		})
	}
	discovery.SortInstances(out)
	return out
}
