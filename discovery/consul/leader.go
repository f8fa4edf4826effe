package consul

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
)

// leaderCheck asks whether the servers are in contact with a leader. It
// returns nil and true when they are, a *NoLeaderError and true when they
// are not, and false when it got no answer (the agent is unreachable: the
// loops see that themselves).
type leaderCheck func(ctx context.Context) (*NoLeaderError, bool)

// leaderCheckKey is the key the leader check reads; it need not exist.
const leaderCheckKey = "vitamin/leader-check"

// kvLeaderCheck reads leaderCheckKey with a stale read, which any server
// answers at once with how long ago it heard from its leader. A KV read
// goes to a server even through a client agent, whose health answers come
// from its streaming view and say nothing of the leader.
func kvLeaderCheck(kv *api.KV, maxLastContact time.Duration) leaderCheck {
	return func(ctx context.Context) (*NoLeaderError, bool) {
		_, meta, err := kv.Get(leaderCheckKey, (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
		switch {
		case err != nil || meta == nil:
			return nil, false
		case !meta.KnownLeader || meta.LastContact > maxLastContact:
			return &NoLeaderError{LastContact: meta.LastContact}, true
		}
		return nil, true
	}
}

// monitor runs the leader check of a Watcher every LeaderCheck.
type monitor struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startMonitorLocked starts the leader check if it is not running. w.mu
// must be held.
func (w *Watcher) startMonitorLocked() {
	if w.monitor != nil || w.leader == nil || w.cfg.LeaderCheck < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{cancel: cancel, done: make(chan struct{})}
	w.monitor = m
	go func() {
		defer close(m.done)
		w.checkLeader(ctx)
	}()
}

// stop stops m and waits for it; a nil m does nothing.
func (m *monitor) stop() {
	if m != nil {
		m.cancel()
		<-m.done
	}
}

// checkLeader runs the leader check until ctx ends, and republishes every
// loop's last snapshot when its verdict changes.
func (w *Watcher) checkLeader(ctx context.Context) {
	t := time.NewTicker(w.cfg.LeaderCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.noLeader.Store(nil)
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.LeaderCheck)
		nl, ok := w.leader(cctx)
		cancel()
		if !ok || ctx.Err() != nil {
			continue
		}
		prev := w.noLeader.Swap(nl)
		switch {
		case nl != nil && prev == nil:
			w.log.Warn("consul: the servers have no leader; serving every watched set as stale", "last_contact", nl.LastContact)
		case nl == nil && prev != nil:
			w.log.Info("consul: the servers have a leader again")
		default:
			continue
		}
		w.mu.Lock()
		loops := make([]*serviceLoop, 0, len(w.loops))
		for _, l := range w.loops {
			loops = append(loops, l)
		}
		w.mu.Unlock()
		for _, l := range loops {
			l.pubMu.Lock()
			if l.hasLast {
				w.publishLocked(l, l.last)
			}
			l.pubMu.Unlock()
		}
	}
}

// publish records s as l's latest snapshot and publishes it, marked stale
// while the leader check finds no leader.
func (w *Watcher) publish(l *serviceLoop, s discovery.Snapshot) {
	l.pubMu.Lock()
	defer l.pubMu.Unlock()
	l.last, l.hasLast = s, true
	w.publishLocked(l, s)
}

func (w *Watcher) publishLocked(l *serviceLoop, s discovery.Snapshot) {
	if nl := w.noLeader.Load(); nl != nil && !s.Stale {
		s.Stale, s.Err = true, nl
	}
	l.feed.Publish(s)
}
