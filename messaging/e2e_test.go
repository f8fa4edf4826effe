package messaging

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// e2eOrders is the number of orders of the end-to-end test:
// VITAMIN_MESSAGING_E2E, default 10,000 (2,000 with the race detector).
func e2eOrders(t testing.TB) int {
	if s := os.Getenv("VITAMIN_MESSAGING_E2E"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("VITAMIN_MESSAGING_E2E=%q is not a positive number", s)
		}
		return n
	}
	if raceEnabled {
		return 2_000
	}
	return 10_000
}

// TestOutboxToConsumersExactlyOnce is the whole path: orders are committed
// with their events through the outbox, two relay processes publish them,
// three consumer processes apply them with the batched SQL store. A third
// relay kills itself after publishing its first events and before marking
// them sent. Midway a relay and a consumer are killed (SIGKILL) and
// started again. Every
// order must end with exactly one effect row, and no event may be
// missing.
func TestOutboxToConsumersExactlyOnce(t *testing.T) {
	n := e2eOrders(t)
	e := newEnv(t)
	pg := vitamintest.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := childSchema(ctx, pg.DB); err != nil {
		t.Fatal(err)
	}
	ob := newOutbox(t, pg.DB, WithCaller("orders"))
	// The durable consumer exists before the first event is published.
	if _, err := NewConsumer(ctx, e.js, childConsumerConfig(), Typed(orderEffect)); err != nil {
		t.Fatal(err)
	}
	start := func(kind string, i int) *vitamintest.Process {
		return startProc(t, kind, kind+"-"+strconv.Itoa(i), e.srv.URL, pg.DSN)
	}
	relays := []*vitamintest.Process{start("relay", 1), start("relay", 2)}
	consumers := []*vitamintest.Process{start("consumer", 1), start("consumer", 2), start("consumer", 3)}
	crashing := start("crashing-relay", 0)

	// Four writers commit the orders, each order in its own transaction.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				id := "order-" + strconv.Itoa(i)
				if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id, total) VALUES ($1, $2)", id, i); err != nil {
						return err
					}
					_, err := ob.Publish(ctx, tx, "events.order.placed", order{ID: id, Total: i})
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}

	effects := func() (rows, orders int) {
		t.Helper()
		if err := pg.DB.QueryRowContext(ctx, "SELECT count(*), count(DISTINCT order_id) FROM order_effects").Scan(&rows, &orders); err != nil {
			t.Fatal(err)
		}
		return rows, orders
	}
	// Kill a relay and a consumer once a third of the orders took effect,
	// while both are busy, and start them again.
	vitamintest.Eventually(t, 120*time.Second, func() error {
		if _, got := effects(); got < n/3 {
			return fmt.Errorf("%d of %d orders took effect", got, n)
		}
		return nil
	})
	relays[0].Kill()
	consumers[0].Kill()
	_, took := effects()
	pending, err := ob.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s and %s with %d orders applied and %d events waiting in the outbox", relays[0].Name(), consumers[0].Name(), took, pending)
	relays[0] = start("relay", 3)
	consumers[0] = start("consumer", 4)

	// The crashing relay published events it never marked: the others
	// publish them again, under the same IDs.
	select {
	case <-crashing.Done():
	case <-time.After(120 * time.Second):
		t.Fatal("the crashing relay published nothing")
	}
	if ws, ok := crashing.State().Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the crashing relay ended with %v, not by its SIGKILL after publishing", crashing.State())
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 180*time.Second, func() error {
		if _, got := effects(); got < n {
			return fmt.Errorf("%d of %d orders took effect", got, n)
		}
		return nil
	})
	settled(t, e.js, "events", "orders", 60*time.Second)

	rows, orders := effects()
	if rows != n || orders != n {
		t.Errorf("%d effect rows for %d orders, want exactly one for each of %d", rows, orders, n)
	}
	var missing int
	if err := pg.DB.QueryRowContext(ctx, "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_effects e WHERE e.order_id = o.id)").Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Errorf("%d orders have no effect", missing)
	}
	if pending, err := ob.Pending(ctx); err != nil || pending != 0 {
		t.Errorf("%d events left unpublished (%v)", pending, err)
	}
	t.Logf("%d orders, %d messages in the stream (the duplicates window dropped the rest)", n, streamMsgs(t, e.js, "events"))
}
