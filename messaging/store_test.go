package messaging

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestStoresClaimMarkRelease checks the contract every Store keeps.
func TestStoresClaimMarkRelease(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { s, _ := NewMemoryStore(MemoryStoreConfig{}); return s },
		"kv": func(t *testing.T) Store {
			e := newEnv(t)
			s, err := NewKVStore(testCtx(t), e.js, KVStoreConfig{Bucket: "keys"})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx := testCtx(t)
			const lease = time.Minute

			a, err := s.Claim(ctx, "order:1/ü", lease)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, "order:1/ü", lease); !errors.Is(err, ErrClaimed) {
				t.Errorf("second claim while leased: %v, want ErrClaimed", err)
			}
			if err := a.Extend(ctx, lease); err != nil {
				t.Errorf("extend: %v", err)
			}
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
			b, err := s.Claim(ctx, "order:1/ü", lease)
			if err != nil {
				t.Fatalf("claim after release: %v", err)
			}
			if err := b.Done(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, "order:1/ü", lease); !errors.Is(err, ErrDuplicate) {
				t.Errorf("claim after done: %v, want ErrDuplicate", err)
			}

			// A holder that dies leaves a lease that expires.
			if _, err := s.Claim(ctx, "order:2", 50*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			var c Claim
			vitamintest.Eventually(t, 10*time.Second, func() error {
				c, err = s.Claim(ctx, "order:2", lease)
				return err
			})
			if err := c.Done(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Claim(ctx, "order:2", lease); !errors.Is(err, ErrDuplicate) {
				t.Errorf("claim after takeover and done: %v, want ErrDuplicate", err)
			}
		})
	}
}

func TestMemoryStoreIsBounded(t *testing.T) {
	s, err := NewMemoryStore(MemoryStoreConfig{MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		c, err := s.Claim(ctx, k, time.Minute)
		if err != nil {
			t.Fatalf("claim %s: %v", k, err)
		}
		if err := c.Done(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 2 {
		t.Errorf("holds %d keys, want 2", s.Len())
	}
	if _, err := s.Claim(ctx, "c", time.Minute); !errors.Is(err, ErrDuplicate) {
		t.Errorf("newest key: %v, want ErrDuplicate", err)
	}
	// Two live claims fill the store: a third key cannot be claimed.
	full, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 2})
	for _, k := range []string{"x", "y"} {
		if _, err := full.Claim(ctx, k, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := full.Claim(ctx, "z", time.Minute); !errors.Is(err, ErrStoreFull) {
		t.Errorf("claim in a store full of live claims: %v, want ErrStoreFull", err)
	}
}

func TestMemoryStoreForgetsAfterRetention(t *testing.T) {
	s, _ := NewMemoryStore(MemoryStoreConfig{Retention: 20 * time.Millisecond})
	ctx := context.Background()
	c, _ := s.Claim(ctx, "k", time.Minute)
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 5*time.Second, func() error {
		c, err := s.Claim(ctx, "k", time.Minute)
		if err == nil {
			return c.Release(ctx)
		}
		return err
	})
}

func TestSQLStoreRollsBackWithTheBusinessChange(t *testing.T) {
	db := newSQLDB(t)
	ctx := testCtx(t)
	c, err := db.store.Claim(ctx, "k1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.effect(ctx, c.(TxClaim).Tx(), "k1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.count(t, "k1"); n != 0 {
		t.Errorf("released claim left %d effect rows", n)
	}
	if done, err := db.store.Processed(ctx, "k1"); err != nil || done {
		t.Errorf("released key processed = %v, %v", done, err)
	}
	c, err = db.store.Claim(ctx, "k1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.effect(ctx, c.(TxClaim).Tx(), "k1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.store.Claim(ctx, "k1", time.Minute); !errors.Is(err, ErrDuplicate) {
		t.Errorf("claim after commit: %v, want ErrDuplicate", err)
	}
	if n := db.count(t, "k1"); n != 1 {
		t.Errorf("%d effect rows, want 1", n)
	}
	if n, err := db.store.Purge(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("purge of recent keys removed %d (%v)", n, err)
	}
	if n, err := db.store.Purge(ctx, -time.Hour); err != nil || n != 1 {
		t.Errorf("purge of all keys removed %d (%v), want 1", n, err)
	}
}

// TestKVStoreAbandonedClaimsExpire: the per-key TTL removes a claim whose
// holder died, without anyone touching it.
func TestKVStoreAbandonedClaimsExpire(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	s, err := NewKVStore(ctx, e.js, KVStoreConfig{Bucket: "ttl"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "abandoned", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 15*time.Second, func() error {
		_, err := s.kv.Get(ctx, kvKey("abandoned"))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil
		}
		return errors.New("the abandoned claim is still there")
	})
}

// TestKVStoreMarksDoneAcrossAServerRestart: the server goes down right
// after a handler's effect, before its key is marked done. The mark is
// written once the server is back, so the key reads as processed and the
// message has its one effect — settled alone and in a batch.
func TestKVStoreMarksDoneAcrossAServerRestart(t *testing.T) {
	for _, batch := range []int{1, 16} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			e := newEnv(t)
			ctx := testCtx(t)
			s, err := NewKVStore(ctx, e.js, KVStoreConfig{Bucket: "restart"})
			if err != nil {
				t.Fatal(err)
			}
			effects := newCounter()
			stopped := make(chan struct{})
			cfg := fastConfig("marks")
			cfg.AckWait, cfg.CommitBatch = 5*time.Second, batch
			c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
				effects.add(m.Key)
				if effects.get(m.Key) == 1 {
					e.srv.Stop()
					close(stopped)
				}
				return nil
			}, WithStore(s))
			if err != nil {
				t.Fatal(err)
			}
			run(t, c)
			if _, err := e.js.Publish(ctx, "events.order", []byte(`{}`), jetstream.WithMsgID("o-1")); err != nil {
				t.Fatal(err)
			}
			<-stopped
			e.srv.Restart(t)
			vitamintest.Eventually(t, 30*time.Second, func() error {
				if done, err := s.Processed(ctx, "o-1"); err != nil || !done {
					return fmt.Errorf("o-1 processed: %v, %v", done, err)
				}
				return nil
			})
			settled(t, e.js, "events", "marks", 30*time.Second)
			if n := effects.get("o-1"); n != 1 {
				t.Errorf("o-1 had %d effects, want 1", n)
			}
		})
	}
}
