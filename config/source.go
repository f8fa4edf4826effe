package config

import (
	"context"
	"maps"
	"sync"
)

// Source is a live layer of configuration, such as Consul KV
// (package [github.com/vitamin-go/vitamin/config/consul]) or a test's
// [MemorySource]. Like koanf's Provider it has two methods: one reads the
// whole layer, the other follows it.
//
// Keys in the maps a Source returns are config keys: nested maps, or flat
// keys whose parts are separated by "." ("db.pool.max"), or both.
//
// A Source that implements fmt.Stringer is named by String in logs,
// metrics and errors.
type Source interface {
	// Load reads the whole layer once. Config.Load calls it, from the
	// caller's goroutine, before Watch.
	Load(ctx context.Context) (map[string]any, error)

	// Watch follows the layer until ctx is done and then returns nil; it
	// returns an error only if it cannot follow the layer at all. It calls
	// emit, from one goroutine at a time, whenever the layer may have
	// changed, with the whole layer (Config ignores an update equal to the
	// last one), or when the layer cannot be read (Update.Err) or its
	// backend is unreachable (Update.Stale). emit applies the update
	// before it returns. Config.Watch calls Watch at most once at a time.
	Watch(ctx context.Context, emit func(Update)) error
}

// Update is what a Source reports to Config: plain data, handed over
// and not changed afterwards.
type Update struct {
	// Data is the whole layer after the change. It is used only when Err
	// is nil and Stale is false; a key missing from Data is deleted.
	Data map[string]any
	// Err, when Stale is false, says that the layer's new content could not
	// be read or parsed: the update is rejected and the layer keeps its
	// last good data.
	Err error
	// Stale says that the source cannot reach its backend (Err says why):
	// the layer keeps its last good data and is reported stale until the
	// next update with Data.
	Stale bool
}

// MemorySource is a Source held in memory: a test double for a remote
// source (as grpc-go ships resolver/manual), or a layer that code changes
// at run time. It is safe for concurrent use.
type MemorySource struct {
	mu      sync.Mutex
	data    map[string]any
	version uint64
	notify  chan struct{} // closed and replaced at each change
}

var _ Source = (*MemorySource)(nil)

// NewMemorySource returns a MemorySource holding a copy of data (nested
// maps or flat keys; nil is empty).
func NewMemorySource(data map[string]any) *MemorySource {
	m := &MemorySource{data: flatten(data), notify: make(chan struct{})}
	return m
}

// Set sets key to value.
func (m *MemorySource) Set(key string, value any) {
	m.change(func(d map[string]any) { d[key] = value })
}

// Delete removes key.
func (m *MemorySource) Delete(key string) {
	m.change(func(d map[string]any) { delete(d, key) })
}

// Replace replaces the whole layer with a copy of data.
func (m *MemorySource) Replace(data map[string]any) {
	flat := flatten(data)
	m.change(func(d map[string]any) {
		clear(d)
		maps.Copy(d, flat)
	})
}

func (m *MemorySource) change(f func(map[string]any)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Copy on write: maps handed out by Load and Watch are never changed.
	d := maps.Clone(m.data)
	f(d)
	m.data = d
	m.version++
	close(m.notify)
	m.notify = make(chan struct{})
}

func (m *MemorySource) current() (map[string]any, uint64, chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data, m.version, m.notify
}

// Load returns the current content.
func (m *MemorySource) Load(context.Context) (map[string]any, error) {
	d, _, _ := m.current()
	return maps.Clone(d), nil
}

// Watch emits the current content and then every change, until ctx is
// done. Changes made in quick succession may be emitted as one.
func (m *MemorySource) Watch(ctx context.Context, emit func(Update)) error {
	var seen uint64
	first := true
	for {
		d, v, notify := m.current()
		if first || v != seen {
			first, seen = false, v
			emit(Update{Data: maps.Clone(d)})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
	}
}
