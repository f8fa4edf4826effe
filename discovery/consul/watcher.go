package consul

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
)

// WatcherConfig holds the settings of a [Watcher]. The zero value gives the
// documented defaults. It is plain data, safe to copy.
type WatcherConfig struct {
	// Datacenter to watch; empty means the agent's own.
	Datacenter string
	// WaitTime is the longest a blocking query waits for a change before
	// the agent answers anyway. Default 1m; Consul caps it at 10m. The
	// client's http.Client must not time out sooner (api.Config leaves
	// its Timeout at zero).
	WaitTime time.Duration
	// RequireLeader makes every read go to the leader. By default reads
	// use AllowStale, so that any server can answer and a watch keeps
	// working while the cluster has no leader.
	RequireLeader bool
	// BackoffMin and BackoffMax bound the wait after a failed read. The
	// wait doubles with each failure in a row, with jitter (between half
	// and all of it). Defaults 100ms and 5s.
	BackoffMin, BackoffMax time.Duration
	// SelfPreservation says when an answer with far fewer instances is
	// served; see [discovery.SelfPreservation].
	SelfPreservation discovery.SelfPreservation
}

// Defaults of WatcherConfig.
const (
	DefaultWaitTime   = time.Minute
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

func (c WatcherConfig) withDefaults() (WatcherConfig, error) {
	if c.WaitTime == 0 {
		c.WaitTime = DefaultWaitTime
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffMin)
	}
	switch {
	case c.WaitTime < 0 || c.WaitTime > 10*time.Minute:
		return c, fmt.Errorf("%w: WatcherConfig.WaitTime %v is not in (0, 10m]", discovery.ErrInvalidConfig, c.WaitTime)
	case c.BackoffMin < 0:
		return c, fmt.Errorf("%w: WatcherConfig.BackoffMin %v is negative", discovery.ErrInvalidConfig, c.BackoffMin)
	case c.BackoffMax < c.BackoffMin:
		return c, fmt.Errorf("%w: WatcherConfig.BackoffMax %v is less than BackoffMin %v", discovery.ErrInvalidConfig, c.BackoffMax, c.BackoffMin)
	}
	sp, err := c.SelfPreservation.WithDefaults()
	if err != nil {
		return c, fmt.Errorf("WatcherConfig: %w", err)
	}
	c.SelfPreservation = sp
	return c, nil
}

// healthFunc reads the passing instances of a service; it is
// Health().Service in production and a scripted sequence in one test.
type healthFunc func(ctx context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)

// Watcher follows the passing instances of services through the Consul
// health endpoint with blocking queries. However many watches a process
// opens on one service, they share a single query loop; it stops when the
// last of them is closed.
//
// The loop starts each query from the LastIndex of the previous answer,
// starts over from index 0 when the index goes backwards (a restored or
// restarted server), backs off with jitter after errors, applies
// self-preservation, and while the agent cannot be reached serves the last
// good set marked stale with the time it was last confirmed.
//
// Watcher is safe for concurrent use.
type Watcher struct {
	cfg    WatcherConfig
	log    *slog.Logger
	health healthFunc

	mu     sync.Mutex
	loops  map[string]*serviceLoop
	closed bool
}

var _ discovery.Watcher = (*Watcher)(nil)

type serviceLoop struct {
	feed   *discovery.Feed
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// NewWatcher returns a watcher that reads through client. It fails only on
// invalid settings, with an error matching [discovery.ErrInvalidConfig]
// that names the field.
func NewWatcher(client *api.Client, cfg WatcherConfig, opts ...Option) (*Watcher, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: client is nil", discovery.ErrInvalidConfig)
	}
	h := client.Health()
	return newWatcher(func(ctx context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return h.Service(service, "", true, q.WithContext(ctx))
	}, cfg, opts...)
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
		return nil, &discovery.FieldError{Field: "service", Reason: "service name is empty"}
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
	if last {
		delete(w.loops, service)
	}
	w.mu.Unlock()
	if last {
		l.cancel()
		l.feed.Close()
		<-l.done
	}
}

// Close stops every query loop and ends all watches: their Next returns
// [discovery.ErrClosed]. It waits for the loops to exit and always returns
// nil.
func (w *Watcher) Close() error {
	w.mu.Lock()
	loops := w.loops
	w.loops, w.closed = map[string]*serviceLoop{}, true
	w.mu.Unlock()
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
	var (
		index         uint64
		lastConfirmed time.Time
		failures      int
	)
	for {
		q := &api.QueryOptions{
			Datacenter: w.cfg.Datacenter,
			AllowStale: !w.cfg.RequireLeader,
			WaitIndex:  index,
			WaitTime:   w.cfg.WaitTime,
		}
		entries, meta, err := w.health(ctx, service, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			index = 0
			good, _ := guard.Good()
			if failures == 1 {
				log.Warn("consul: cannot read the service's health; serving the last good set as stale",
					"instances", len(good), "last_confirmed", lastConfirmed, "error", err)
			}
			l.feed.Publish(discovery.Snapshot{Instances: good, Stale: true, LastConfirmed: lastConfirmed, Err: err})
			if !sleep(ctx, w.backoff(failures)) {
				return
			}
			continue
		}
		if failures > 0 {
			log.Info("consul: reading the service's health again", "failures", failures)
			failures = 0
		}
		lastConfirmed = time.Now()
		switch next := meta.LastIndex; {
		case next < index:
			log.Info("consul: the index went backwards; starting over from 0", "from", index, "to", next)
			index = 0
		case next == 0:
			index = 1 // never block on 0: that would not block at all
		default:
			index = next
		}
		v := guard.Observe(instances(entries))
		switch {
		case v.Held:
			log.Warn("consul: self-preservation keeps the last good set until a second read confirms the drop",
				"previous", v.Previous, "answer", len(entries))
		case v.Confirmed:
			log.Warn("consul: self-preservation confirmed the drop", "previous", v.Previous, "now", len(v.Serve))
		}
		l.feed.Publish(discovery.Snapshot{Instances: v.Serve, Preserved: v.Held, LastConfirmed: lastConfirmed})
		if v.Held {
			// Read again soon, without waiting for a change.
			index = 0
			if !sleep(ctx, guard.Config().ConfirmAfter) {
				return
			}
		}
	}
}

// backoff returns the wait after the n-th failure in a row: exponential
// from BackoffMin to BackoffMax, with "equal jitter" (between half and all
// of it), so that many processes do not retry in step.
func (w *Watcher) backoff(n int) time.Duration {
	d := w.cfg.BackoffMin << min(n-1, 30)
	if d <= 0 || d > w.cfg.BackoffMax {
		d = w.cfg.BackoffMax
	}
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
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
