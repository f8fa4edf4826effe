package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestBatchFailingHandlerIsRetriedAlone: one worker settles twenty
// messages in batches (SQL: one transaction each). The handler of one of
// them writes its effect and then fails, every time: its effect is rolled
// back to its savepoint, it alone is redelivered and, after MaxDeliver
// deliveries, dead-lettered; the others commit once and run once.
func TestBatchFailingHandlerIsRetriedAlone(t *testing.T) {
	for _, kind := range []string{"sql", "kv"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			ctx := testCtx(t)
			var (
				store Store
				db    sqlDB
			)
			if kind == "sql" {
				db = newSQLDB(t)
				store = db.store
			} else {
				s, err := NewKVStore(ctx, e.js, KVStoreConfig{})
				if err != nil {
					t.Fatal(err)
				}
				store = s
			}
			const n, bad = 20, "order-7"
			p := publisher(t, e)
			for i := range n {
				if _, err := p.Publish(ctx, "events.order", order{ID: strconv.Itoa(i)}, WithMsgID("order-"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			calls, effects := newCounter(), newCounter()
			cfg := fastConfig("batch")
			cfg.Workers, cfg.MaxDeliver, cfg.CommitBatch, cfg.CommitWait = 1, 3, 32, 50*time.Millisecond
			metrics := vitamintest.NewMetrics(t)
			c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
				calls.add(m.Key)
				if kind == "sql" {
					if err := db.effect(ctx, m.Tx(), m.Key); err != nil {
						return err
					}
				} else {
					effects.add(m.Key)
				}
				if m.Key == bad {
					return errors.New("payment refused")
				}
				return nil
			}, WithStore(store), WithMeterProvider(metrics.Provider))
			if err != nil {
				t.Fatal(err)
			}
			run(t, c)
			settled(t, e.js, "events", "batch", 20*time.Second)
			dls := deadLetters(t, e.js, 1)
			if len(dls) != 1 || dls[0].Headers().Get(HeaderOriginMsgID) != bad || dls[0].Headers().Get(HeaderDeadLetterReason) != ReasonMaxDeliver {
				t.Errorf("dead letters %d, want %s after max deliveries", len(dls), bad)
			}
			for i := range n {
				key := "order-" + strconv.Itoa(i)
				wantCalls, wantEffects := 1, 1
				if key == bad {
					wantCalls, wantEffects = cfg.MaxDeliver, 0
				}
				got := effects.get(key)
				if kind == "sql" {
					got = db.count(t, key)
				}
				if key == bad && kind == "kv" {
					wantEffects = cfg.MaxDeliver // no transaction to undo it
				}
				if calls.get(key) != wantCalls || got != wantEffects {
					t.Errorf("%s: handler ran %d times with %d effects, want %d and %d", key, calls.get(key), got, wantCalls, wantEffects)
				}
			}
			if got := metrics.Sum(t, "vitamin.messaging.processed"); got != n-1 {
				t.Errorf("processed %d, want %d", got, n-1)
			}
		})
	}
}

// TestBatchCommitsALoneMessage: a single message is handled and committed
// without waiting for a batch to fill.
func TestBatchCommitsALoneMessage(t *testing.T) {
	e := newEnv(t)
	db := newSQLDB(t)
	ctx := testCtx(t)
	cfg := fastConfig("lone")
	cfg.CommitWait = time.Second // bounded: the batch does not wait for more
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		return db.effect(ctx, m.Tx(), m.Key)
	}, WithStore(db.store))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	if _, err := publisher(t, e).Publish(ctx, "events.lone", order{ID: "1"}, WithMsgID("lone")); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 20*time.Second, func() error {
		if got := db.count(t, "lone"); got != 1 {
			return fmt.Errorf("%d effects", got)
		}
		return nil
	})
	settled(t, e.js, "events", "lone", 10*time.Second)
}

// TestBatchHandlerHidingAnSQLError: a handler whose statement fails
// (aborting a PostgreSQL transaction) and that returns nil anyway does not
// fail its batch: its message alone is rolled back and retried, and the
// others commit once.
func TestBatchHandlerHidingAnSQLError(t *testing.T) {
	e := newEnv(t)
	db := newSQLDB(t)
	ctx := testCtx(t)
	const n, bad = 10, "hide-4"
	p := publisher(t, e)
	for i := range n {
		if _, err := p.Publish(ctx, "events.hide", order{ID: strconv.Itoa(i)}, WithMsgID("hide-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	calls := newCounter()
	cfg := fastConfig("hide")
	cfg.Workers, cfg.MaxDeliver, cfg.CommitWait = 1, 3, 50*time.Millisecond
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		calls.add(m.Key)
		if m.Key == bad {
			_, _ = m.Tx().ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)") // error ignored
			return nil
		}
		return db.effect(ctx, m.Tx(), m.Key)
	}, WithStore(db.store))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	settled(t, e.js, "events", "hide", 20*time.Second)
	deadLetters(t, e.js, 1)
	for i := range n {
		key := "hide-" + strconv.Itoa(i)
		wantCalls, wantEffects := 1, 1
		if key == bad {
			wantCalls, wantEffects = cfg.MaxDeliver, 0
		}
		if calls.get(key) != wantCalls || db.count(t, key) != wantEffects {
			t.Errorf("%s: handler ran %d times with %d effects, want %d and %d", key, calls.get(key), db.count(t, key), wantCalls, wantEffects)
		}
	}
}

// TestBatchWarnsOfAPoolWithoutIdleRoom: with database/sql's default of 2
// idle connections and 8 workers, the pool closes a connection after most
// batches and the next batch opens another. The consumer says so once, in
// a warning that names the setting; with idle room for every worker (and
// the test's own queries) it says nothing.
func TestBatchWarnsOfAPoolWithoutIdleRoom(t *testing.T) {
	for _, idle := range []int{2, 16} {
		t.Run(fmt.Sprintf("idle %d", idle), func(t *testing.T) {
			e := newEnv(t)
			db := newSQLDB(t)
			db.db.SetMaxIdleConns(idle)
			ctx := testCtx(t)
			cfg := fastConfig("pool")
			cfg.Workers, cfg.CommitBatch = 8, 4
			var logs vitamintest.Buffer
			c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
				return db.effect(ctx, m.Tx(), m.Key)
			}, WithStore(db.store), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000 // waiting before the consumer starts: all workers busy
			p := publisher(t, e)
			for i := range n {
				if _, err := p.PublishAsync(ctx, "events.pool", order{ID: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			run(t, c)
			vitamintest.Eventually(t, 30*time.Second, func() error {
				if rows, _ := db.total(t); rows != n {
					return fmt.Errorf("%d of %d effects", rows, n)
				}
				return nil
			})
			t.Logf("the pool closed %d connections for want of idle room", db.db.Stats().MaxIdleClosed)
			warnings := strings.Count(logs.String(), "SetMaxIdleConns")
			switch {
			case idle < cfg.Workers && warnings != 1:
				t.Errorf("%d idle connections for %d workers: %d warnings, want 1; log:\n%s", idle, cfg.Workers, warnings, logs.String())
			case idle >= cfg.Workers && warnings != 0:
				t.Errorf("%d idle connections for %d workers: %d warnings, want none; log:\n%s", idle, cfg.Workers, warnings, logs.String())
			}
		})
	}
}
