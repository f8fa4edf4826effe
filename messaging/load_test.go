package messaging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// loadMessages is the number of messages of the load test:
// VITAMIN_MESSAGING_LOAD, default 10,000.
func loadMessages(t testing.TB) int {
	if s := os.Getenv("VITAMIN_MESSAGING_LOAD"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("VITAMIN_MESSAGING_LOAD=%q is not a positive number", s)
		}
		return n
	}
	return 10_000
}

// TestThreeInstancesUnderRedeliveries: three consumer instances share the
// messages; one delivery in ten is forced to come back, half by a failed
// handler, half by a lost ack. Every message's effect must happen exactly
// once, and none may be lost.
func TestThreeInstancesUnderRedeliveries(t *testing.T) {
	n := loadMessages(t)
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
				s, err := NewKVStore(ctx, e.js, KVStoreConfig{Memory: true})
				if err != nil {
					t.Fatal(err)
				}
				store = s
			}
			effects := newCounter()

			p, err := NewPublisher(e.js, PublisherConfig{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if _, err := p.PublishAsync(ctx, "events.load", order{ID: strconv.Itoa(i), Total: i}, WithMsgID("load-"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if got := streamMsgs(t, e.js, "events"); got != uint64(n) {
				t.Fatalf("stream holds %d messages, want %d", got, n)
			}

			handler := Typed(func(ctx context.Context, m *Message, o order) error {
				if o.Total%20 == 0 && m.NumDelivered == 1 {
					return errors.New("forced failure")
				}
				if kind == "sql" {
					return db.effect(ctx, m.Tx(), m.Key)
				}
				effects.add(m.Key)
				return nil
			})
			lostAck := func(m *Message) bool {
				i, _ := strconv.Atoi(m.Key[len("load-"):])
				return !(i%20 == 10 && m.NumDelivered == 1)
			}
			cfg := fastConfig("load")
			cfg.Workers = 8
			cfg.Backoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
			for range 3 {
				nc := e.srv.Connect(t)
				c, err := NewConsumer(ctx, newJS(t, nc), cfg, handler, WithStore(store), withBeforeAck(lostAck))
				if err != nil {
					t.Fatal(err)
				}
				run(t, c)
			}
			vitamintest.EventuallyProgressing(t, 30*time.Second, func() (int, error) {
				got := effects.keys()
				if kind == "sql" {
					_, got = db.total(t)
				}
				if got < n {
					return got, fmt.Errorf("%d of %d messages have had their effect", got, n)
				}
				return got, nil
			})
			settled(t, e.js, "events", "load", 30*time.Second)

			if kind == "sql" {
				rows, keys := db.total(t)
				if rows != n || keys != n {
					t.Errorf("%d effect rows for %d keys, want %d of each", rows, keys, n)
				}
				return
			}
			for i := range n {
				if got := effects.get("load-" + strconv.Itoa(i)); got != 1 {
					t.Errorf("load-%d: effect ran %d times, want once", i, got)
				}
			}
		})
	}
}
