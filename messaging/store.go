package messaging

import (
	"container/list"
	"context"
	"database/sql"
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
// valid.
type MemoryStoreConfig struct {
	// MaxKeys bounds the number of keys kept. When it is reached, the
	// oldest processed or expired keys are forgotten first. Default
	// 100,000.
	MaxKeys int
	// Retention is how long a processed key is remembered. Default 24h.
	Retention time.Duration
}

// MemoryStore is a bounded Store in process memory, with a TTL: for one
// consumer instance, or several in one process. It is safe for concurrent
// use.
type MemoryStore struct {
	cfg MemoryStoreConfig

	mu      sync.Mutex
	entries map[string]*memEntry
	order   *list.List // of *memEntry, oldest first
	token   uint64
}

type memEntry struct {
	key     string
	done    bool
	expires time.Time
	token   uint64
	elem    *list.Element
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryStoreConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 || cfg.Retention < 0 {
		return nil, invalid("MemoryStoreConfig: MaxKeys and Retention must not be negative")
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	return &MemoryStore{cfg: cfg, entries: make(map[string]*memEntry), order: list.New()}, nil
}

// Len returns the number of keys held, processed or claimed.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Claim implements Store.
func (s *MemoryStore) Claim(_ context.Context, key string, lease time.Duration) (Claim, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		switch {
		case !now.Before(e.expires):
			s.remove(e)
		case e.done:
			return nil, ErrDuplicate
		default:
			return nil, &ClaimedError{Key: key, Until: e.expires}
		}
	}
	for len(s.entries) >= s.cfg.MaxKeys {
		oldest := s.order.Front().Value.(*memEntry)
		if !oldest.done && now.Before(oldest.expires) {
			return nil, ErrStoreFull
		}
		s.remove(oldest)
	}
	s.token++
	e := &memEntry{key: key, expires: now.Add(lease), token: s.token}
	e.elem = s.order.PushBack(e)
	s.entries[key] = e
	return &memClaim{s: s, e: e, token: e.token}, nil
}

func (s *MemoryStore) remove(e *memEntry) {
	delete(s.entries, e.key)
	s.order.Remove(e.elem)
}

type memClaim struct {
	s     *MemoryStore
	e     *memEntry
	token uint64
}

// owned reports whether the claim still holds its entry; s.mu is held.
func (c *memClaim) owned() bool {
	e, ok := c.s.entries[c.e.key]
	return ok && e == c.e && e.token == c.token && !e.done
}

func (c *memClaim) Extend(_ context.Context, lease time.Duration) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if !c.owned() {
		return &ClaimedError{Key: c.e.key}
	}
	c.e.expires = time.Now().Add(lease)
	return nil
}

func (c *memClaim) Done(context.Context) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if e, ok := c.s.entries[c.e.key]; !ok || e != c.e {
		// The lease expired and the key was forgotten: record it again.
		if _, taken := c.s.entries[c.e.key]; taken {
			return &ClaimedError{Key: c.e.key}
		}
		c.e.elem = c.s.order.PushBack(c.e)
		c.s.entries[c.e.key] = c.e
	}
	c.e.done = true
	c.e.expires = time.Now().Add(c.s.cfg.Retention)
	c.s.order.MoveToBack(c.e.elem)
	return nil
}

func (c *memClaim) Release(context.Context) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.owned() {
		c.s.remove(c.e)
	}
	return nil
}
