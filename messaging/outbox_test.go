package messaging

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// newOutbox makes an outbox in a fresh PostgreSQL schema.
func newOutbox(t testing.TB, db *sql.DB, opts ...PublisherOption) *Outbox {
	t.Helper()
	ob, err := NewOutbox(testCtx(t), db, OutboxConfig{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// startRelay runs a relay until the test ends.
func startRelay(t testing.TB, ob *Outbox, js jetstream.JetStream, cfg RelayConfig) *Relay {
	t.Helper()
	r, err := NewRelay(ob, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("stop relay: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

// inTx runs f in a transaction and commits it, or rolls it back if f
// fails.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// streamMsgIDs reads every message of a stream and returns their
// Nats-Msg-Id headers in stream order.
func streamMsgIDs(t testing.TB, js jetstream.JetStream, stream string) []string {
	t.Helper()
	n := int(streamMsgs(t, js, stream))
	if n == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(testCtx(t), stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < n {
		batch, err := cons.Fetch(n-len(ids), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			ids = append(ids, m.Headers().Get(HeaderMsgID))
			got++
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages of %s: %v", len(ids), n, stream, batch.Error())
		}
	}
	return ids
}

// TestOutboxPublishesCommittedEventsOnly: an event written in a transaction
// that rolls back is never published; one that commits is published with
// its outbox ID as Nats-Msg-Id and the writer's headers, woken by the
// commit's notification (polling is an hour apart here).
func TestOutboxPublishesCommittedEventsOnly(t *testing.T) {
	e := newEnv(t)
	pg := vitamintest.StartPostgres(t)
	prop := propagation.TraceContext{}
	ob := newOutbox(t, pg.DB, WithCaller("orders"), WithTracing(tracingnats.WithPropagator(prop)))
	startRelay(t, ob, e.js, RelayConfig{PollInterval: time.Hour})
	ctx, _, _ := remoteParent(t)

	rolledBack := errors.New("the order is refused")
	var lostID string
	err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
		var err error
		lostID, err = ob.Publish(ctx, tx, "events.order.placed", order{ID: "refused"})
		if err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}
	var id string
	if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
		var err error
		id, err = ob.Publish(ctx, tx, "events.order.placed", order{ID: "o-1", Total: 7})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	got := make(chan *Message, 1)
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("outbox"), func(_ context.Context, m *Message) error {
		got <- &Message{ID: m.ID, Caller: m.Caller, Header: m.Header, Data: append([]byte(nil), m.Data...)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	var m *Message
	select {
	case m = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the committed event was not published")
	}
	if m.ID != id || m.Caller != "orders" || m.Header.Get("traceparent") == "" {
		t.Errorf("published msg id %q caller %q traceparent %q, want %q, orders and a trace", m.ID, m.Caller, m.Header.Get("traceparent"), id)
	}
	if string(m.Data) != `{"id":"o-1","total":7}` {
		t.Errorf("payload %s", m.Data)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n, err := ob.Pending(testCtx(t)); err != nil || n != 0 {
			return fmt.Errorf("pending %d, %v", n, err)
		}
		return nil
	})
	for _, got := range streamMsgIDs(t, e.js, "events") {
		if got == lostID {
			t.Errorf("the rolled-back event %s was published", lostID)
		}
	}
	if n := streamMsgs(t, e.js, "events"); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestTwoRelaysPublishEachEventOnce: two relays on one table, events
// committed from several goroutines, some while the relays run: each event
// is published by exactly one relay (the published counters add up to the
// number of events), and the stream holds each once.
func TestTwoRelaysPublishEachEventOnce(t *testing.T) {
	e := newEnv(t)
	pg := vitamintest.StartPostgres(t)
	metrics := vitamintest.NewMetrics(t)
	ob := newOutbox(t, pg.DB, WithMeterProvider(metrics.Provider))
	ctx := testCtx(t)
	const n = 1000
	write := func(from, to int) error {
		for i := from; i < to; i += 10 {
			if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
				for j := i; j < min(i+10, to); j++ {
					if _, err := ob.Publish(ctx, tx, "events.order.placed", order{ID: strconv.Itoa(j)}, WithMsgID("order-"+strconv.Itoa(j))); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(0, n/2); err != nil { // waiting before the relays start
		t.Fatal(err)
	}
	startRelay(t, ob, e.js, RelayConfig{BatchSize: 50})
	startRelay(t, ob, e.js, RelayConfig{BatchSize: 50})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() { errs <- write(n/2+w*n/8, n/2+(w+1)*n/8) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if got := metrics.Sum(t, "vitamin.messaging.outbox.published"); got != n {
			return fmt.Errorf("published %d, want %d", got, n)
		}
		return nil
	})
	ids := streamMsgIDs(t, e.js, "events")
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(ids) != n || len(seen) != n {
		t.Errorf("stream holds %d messages with %d IDs, want %d", len(ids), len(seen), n)
	}
	if got := metrics.Sum(t, "vitamin.messaging.outbox.delay"); got != n {
		t.Errorf("delay recorded for %d events, want %d", got, n)
	}
}

// TestRelayPollsWithoutNotifications: with LISTEN off, polling publishes.
func TestRelayPollsWithoutNotifications(t *testing.T) {
	e := newEnv(t)
	pg := vitamintest.StartPostgres(t)
	ob := newOutbox(t, pg.DB)
	startRelay(t, ob, e.js, RelayConfig{DisableNotify: true, PollInterval: 20 * time.Millisecond})
	ctx := testCtx(t)
	if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
		_, err := ob.Publish(ctx, tx, "events.polled", order{ID: "p"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := streamMsgs(t, e.js, "events"); n != 1 {
			return fmt.Errorf("%d messages", n)
		}
		return nil
	})
}

// TestRelayCleansPublishedEvents: published events are deleted after the
// retention; unpublished ones stay.
func TestRelayCleansPublishedEvents(t *testing.T) {
	e := newEnv(t)
	pg := vitamintest.StartPostgres(t)
	ob := newOutbox(t, pg.DB)
	ctx := testCtx(t)
	for i := range 3 {
		if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
			_, err := ob.Publish(ctx, tx, "events.cleaned", order{ID: strconv.Itoa(i)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// An event for a subject no stream captures cannot be published.
	if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
		_, err := ob.Publish(ctx, tx, "nowhere.stuck", order{ID: "stuck"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	startRelay(t, ob, e.js, RelayConfig{Retention: time.Millisecond, CleanupInterval: 20 * time.Millisecond,
		Timeout: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	vitamintest.Eventually(t, 20*time.Second, func() error {
		var total int
		if err := pg.DB.QueryRowContext(ctx, "SELECT count(*) FROM vitamin_outbox").Scan(&total); err != nil {
			return err
		}
		if total != 1 {
			return fmt.Errorf("%d rows in the outbox, want the stuck one", total)
		}
		return nil
	})
	if n := streamMsgs(t, e.js, "events"); n != 3 {
		t.Errorf("stream holds %d messages, want 3", n)
	}
	if n, err := ob.Pending(ctx); err != nil || n != 1 {
		t.Errorf("pending %d (%v), want the stuck event", n, err)
	}
}

func TestOutboxInvalidSettings(t *testing.T) {
	pg := vitamintest.StartPostgres(t)
	ctx := testCtx(t)
	for name, err := range map[string]error{
		"OutboxConfig.Table": func() error {
			_, err := NewOutbox(ctx, pg.DB, OutboxConfig{Table: "x; drop"})
			return err
		}(),
		"OutboxConfig.Dialect": func() error {
			_, err := NewOutbox(ctx, pg.DB, OutboxConfig{Dialect: "oracle"})
			return err
		}(),
		"RelayConfig.BatchSize": func() error {
			_, err := NewRelay(newOutbox(t, pg.DB), newJS(t, vitamintest.StartNATS(t).Connect(t)), RelayConfig{BatchSize: 20_000})
			return err
		}(),
		"RelayConfig.MaxBackoff": func() error {
			_, err := NewRelay(newOutbox(t, pg.DB), newJS(t, vitamintest.StartNATS(t).Connect(t)), RelayConfig{Backoff: time.Second, MaxBackoff: time.Millisecond})
			return err
		}(),
	} {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != name || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want a *FieldError for it", name, err)
		}
	}
}
