package messaging

import (
	"cmp"
	"context"
	"database/sql"
	"hash/maphash"
	"sync"
	"time"
)

// Store keeps idempotency keys: which messages were processed, and which
// are being processed right now. Implementations must be safe for
// concurrent use.
type Store interface {
	// Claim takes the key for one delivery, with a lease that expires
	// after lease unless extended. It returns ErrDuplicate when the key is
	// already done, and an error matching ErrClaimed (usually a
	// *ClaimedError) when another delivery holds a live lease.
	Claim(ctx context.Context, key string, lease time.Duration) (Claim, error)
}

// Claim is one delivery's hold on an idempotency key. The consumer calls
// Extend from another goroutine while the handler runs, then exactly one
// of Done or Release; implementations must be safe for that.
type Claim interface {
	// Extend renews the lease for another lease duration.
	Extend(ctx context.Context, lease time.Duration) error
	// Done records the key as processed. It is called only after the
	// handler succeeded.
	Done(ctx context.Context) error
	// Release gives the key up, so that a redelivery can claim it.
	Release(ctx context.Context) error
}

// TxClaim is a Claim that holds a database transaction; the consumer hands
// it to the handler through Message.Tx.
type TxClaim interface {
	Claim
	Tx() *sql.Tx
}

// MemoryStoreConfig holds a MemoryStore's settings. The zero value is
// valid. It is plain data, safe to copy.
type MemoryStoreConfig struct {
	// MaxKeys bounds the number of keys kept. When it is reached, the
	// oldest processed or expired keys are forgotten first. Default
	// 100,000.
	MaxKeys int `yaml:"max_keys,omitempty" json:"max_keys,omitempty"`
	// Retention is how long a processed key is remembered. Default 24h.
	Retention time.Duration `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// MemoryStore is a bounded Store in process memory, with a TTL: for one
// consumer instance, or several in one process. Keys are spread over
// shards, each with its own lock and bound. It is safe for concurrent use.
type MemoryStore struct {
	cfg    MemoryStoreConfig
	seed   maphash.Seed
	shards [memShards]memShard
}

const memShards = 32

type memShard struct {
	mu        sync.Mutex
	max       int
	epoch     time.Time     // the store's creation; times are offsets from it
	retention time.Duration // how long a processed key is kept
	entries   map[string]*memEntry
	head      memEntry // sentinel of the list of entries, oldest first
	_         [32]byte // keep shards' locks on separate cache lines
}

// memEntry is a key's record, and the Claim of the delivery that created
// it. An entry is in its shard's map exactly when it is linked in the
// shard's list, so a claim owns its key while its entry is linked.
type memEntry struct {
	shard      *memShard
	key        string
	expires    time.Duration // offset from shard.epoch
	prev, next *memEntry
	done       bool
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryStoreConfig) (*MemoryStore, error) {
	if err := cmp.Or(notNegative("MemoryStoreConfig.MaxKeys", cfg.MaxKeys), notNegative("MemoryStoreConfig.Retention", cfg.Retention)); err != nil {
		return nil, err
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	s := &MemoryStore{cfg: cfg, seed: maphash.MakeSeed()}
	epoch := time.Now()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.max = (cfg.MaxKeys + memShards - 1) / memShards
		sh.epoch, sh.retention = epoch, cfg.Retention
		sh.entries = make(map[string]*memEntry)
		sh.head.prev, sh.head.next = &sh.head, &sh.head
	}
	// Small stores use one shard, so that MaxKeys is exact.
	if cfg.MaxKeys < 64*memShards {
		s.shards[0].max = cfg.MaxKeys
	}
	return s, nil
}

func (s *MemoryStore) shard(key string) *memShard {
	if s.cfg.MaxKeys < 64*memShards {
		return &s.shards[0]
	}
	return &s.shards[maphash.String(s.seed, key)%memShards]
}

// Len returns the number of keys held, processed or claimed.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// now reads only the monotonic clock, which is cheaper than time.Now.
func (sh *memShard) now() time.Duration { return time.Since(sh.epoch) }

// Claim implements Store. The key is kept as given, not copied.
func (s *MemoryStore) Claim(_ context.Context, key string, lease time.Duration) (Claim, error) {
	sh := s.shard(key)
	now := sh.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.entries[key]; ok {
		switch {
		case now >= e.expires:
			sh.remove(e)
		case e.done:
			return nil, ErrDuplicate
		default:
			return nil, &ClaimedError{Key: key, Until: sh.epoch.Add(e.expires)}
		}
	}
	for len(sh.entries) >= sh.max {
		oldest := sh.head.next
		if !oldest.done && now < oldest.expires {
			return nil, ErrStoreFull
		}
		sh.remove(oldest)
	}
	e := &memEntry{shard: sh, key: key, expires: now + lease}
	sh.pushBack(e)
	sh.entries[key] = e
	return e, nil
}

func (sh *memShard) pushBack(e *memEntry) {
	e.prev, e.next = sh.head.prev, &sh.head
	e.prev.next, sh.head.prev = e, e
}

func (sh *memShard) unlink(e *memEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *memShard) remove(e *memEntry) {
	delete(sh.entries, e.key)
	sh.unlink(e)
}

// owned reports whether the claim still holds its key; shard.mu is held.
func (e *memEntry) owned() bool { return e.next != nil && !e.done }

func (e *memEntry) Extend(_ context.Context, lease time.Duration) error {
	sh := e.shard
	now := sh.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !e.owned() {
		return &ClaimedError{Key: e.key}
	}
	e.expires = now + lease
	return nil
}

func (e *memEntry) Done(context.Context) error {
	sh := e.shard
	now := sh.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.next != nil { // still linked: the key is ours, no map operation
		sh.unlink(e)
	} else { // the lease expired and the entry was dropped
		if _, ok := sh.entries[e.key]; ok {
			return &ClaimedError{Key: e.key} // another delivery took the key
		}
		sh.entries[e.key] = e
	}
	e.done = true
	e.expires = now + sh.retention
	sh.pushBack(e)
	return nil
}

func (e *memEntry) Release(context.Context) error {
	e.shard.mu.Lock()
	defer e.shard.mu.Unlock()
	if e.owned() {
		e.shard.remove(e)
	}
	return nil
}
