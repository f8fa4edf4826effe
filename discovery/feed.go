package discovery

import (
	"context"
	"sync"
)

// Feed holds the latest snapshot of one service and hands it to any number
// of watches, so that one backend query serves them all. Backends that
// implement [Watcher] publish into a Feed; users of a Watcher do not need
// it.
//
// Feed is safe for concurrent use.
type Feed struct {
	service string

	mu      sync.Mutex
	cur     Snapshot
	version uint64        // 0 until the first Publish
	changed chan struct{} // closed and replaced on each Publish
	closed  bool
	done    chan struct{} // closed by Close
}

// NewFeed returns a feed for service with nothing published yet.
func NewFeed(service string) *Feed {
	return &Feed{service: service, changed: make(chan struct{}), done: make(chan struct{})}
}

// Publish makes s the current snapshot and wakes the watches whose
// filtered view changed. s.Instances must be sorted (see [SortInstances])
// and must not be modified afterwards. Publishing to a closed feed does
// nothing.
func (f *Feed) Publish(s Snapshot) {
	s.Service = f.service
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.cur = s
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
}

// Current returns the current snapshot, and false if nothing was published
// yet.
func (f *Feed) Current() (Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.version > 0
}

// Close ends the feed: its watches' Next returns [ErrClosed].
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
}

// Watch returns a new watch of the feed, filtered by opts. onClose, if not
// nil, is called once when the watch is closed (not when the feed is).
func (f *Feed) Watch(onClose func(), opts ...WatchOption) (Watch, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	w := &feedWatch{feed: f, filter: Filter(opts...), onClose: onClose,
		closed: make(chan struct{}), turn: make(chan struct{}, 1)}
	return w, nil
}

type feedWatch struct {
	feed    *Feed
	filter  func([]Instance) []Instance
	onClose func()

	closeOnce sync.Once
	closed    chan struct{}

	turn      chan struct{} // one Next at a time; guards the fields below
	seen      uint64
	last      Snapshot
	delivered bool
}

func (w *feedWatch) Next(ctx context.Context) (Snapshot, error) {
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	case <-w.closed:
		return Snapshot{}, ErrClosed
	}
	defer func() { <-w.turn }()
	f := w.feed
	for {
		select {
		case <-w.closed:
			return Snapshot{}, ErrClosed
		default:
		}
		f.mu.Lock()
		closed, ver, cur, changed := f.closed, f.version, f.cur, f.changed
		f.mu.Unlock()
		if closed {
			return Snapshot{}, ErrClosed
		}
		if ver > w.seen {
			w.seen = ver
			s := cur
			s.Instances = w.filter(cur.Instances)
			if !w.delivered || w.last.differs(s) {
				w.last, w.delivered = s, true
				return s, nil
			}
			w.last.LastConfirmed = s.LastConfirmed
		}
		select {
		case <-changed:
		case <-f.done:
		case <-w.closed:
		case <-ctx.Done():
			return Snapshot{}, ctx.Err()
		}
	}
}

func (w *feedWatch) Close() error {
	w.closeOnce.Do(func() {
		close(w.closed)
		if w.onClose != nil {
			w.onClose()
		}
	})
	return nil
}
