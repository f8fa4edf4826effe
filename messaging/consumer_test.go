package messaging

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func publisher(t testing.TB, e *env) *Publisher {
	t.Helper()
	p, err := NewPublisher(e.js, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	p := publisher(t, e)
	// Not JSON: the typed handler cannot decode it.
	if _, err := p.Publish(ctx, "events.bad", []byte("{not json"), WithMsgID("bad-1"),
		WithHeader(HeaderContentType, ContentTypeJSON)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, "events.refused", order{ID: "o-2"}, WithMsgID("refused-1")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	h := Typed(func(ctx context.Context, m *Message, o order) error {
		calls.Add(1)
		return resilience.Permanent(fmt.Errorf("order %s refused", o.ID))
	})
	c, err := NewConsumer(ctx, e.js, fastConfig("poison"), h)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	dls := deadLetters(t, e.js, 2)
	settled(t, e.js, "events", "poison", 10*time.Second)
	stop()

	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	if calls.Load() != 1 {
		t.Errorf("the permanent failure ran %d times, want once", calls.Load())
	}
	want := map[string]map[string]string{
		"events.bad": {HeaderDeadLetterReason: ReasonUndecodable, HeaderOriginStream: "events", HeaderOriginSequence: "1",
			HeaderDeliveries: "1", HeaderOriginConsumer: "poison", HeaderOriginMsgID: "bad-1"},
		"events.refused": {HeaderDeadLetterReason: ReasonPermanent, HeaderOriginStream: "events", HeaderOriginSequence: "2",
			HeaderDeliveries: "1", HeaderDeadLetterError: "order o-2 refused", HeaderOriginMsgID: "refused-1"},
	}
	for _, dl := range dls {
		if dl.Subject() != "deadletter.events.poison" {
			t.Errorf("dead letter on %s", dl.Subject())
		}
		origin := dl.Headers().Get(HeaderOriginSubject)
		for k, v := range want[origin] {
			if got := dl.Headers().Get(k); got != v {
				t.Errorf("dead letter of %s: %s = %q, want %q", origin, k, got, v)
			}
		}
		if dl.Headers().Get(HeaderDeadLetterError) == "" {
			t.Errorf("dead letter of %s has no error header", origin)
		}
		delete(want, origin)
	}
	if len(want) != 0 {
		t.Errorf("no dead letter for %v", want)
	}
}

// TestResiliencePermanentStopsRetries: a handler error marked with
// resilience.Permanent, even wrapped, dead-letters the message at once: the
// handler ran once, there is one dead letter, and the broker delivered the
// message once (no redelivery, nothing left pending).
func TestResiliencePermanentStopsRetries(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	p := publisher(t, e)
	calls := newCounter()
	handled := make(chan string, 2)
	c, err := NewConsumer(ctx, e.js, fastConfig("permanent"), func(ctx context.Context, m *Message) error {
		calls.add(m.ID)
		if m.ID == "refused-1" {
			return fmt.Errorf("charge order: %w", resilience.Permanent(errors.New("card declined")))
		}
		handled <- m.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	if _, err := p.Publish(ctx, "events.charge", order{ID: "o-1"}, WithMsgID("refused-1")); err != nil {
		t.Fatal(err)
	}
	dls := deadLetters(t, e.js, 1)
	// A message published after the dead letter is handled, and the
	// consumer then has nothing pending or redelivered.
	if _, err := p.Publish(ctx, "events.charge", order{ID: "o-2"}, WithMsgID("accepted-2")); err != nil {
		t.Fatal(err)
	}
	if id := <-handled; id != "accepted-2" {
		t.Fatalf("handled %s, want accepted-2", id)
	}
	settled(t, e.js, "events", "permanent", 10*time.Second)

	if n := calls.get("refused-1"); n != 1 {
		t.Errorf("the permanently failing handler ran %d times, want once", n)
	}
	if n := streamMsgs(t, e.js, "deadletters"); n != 1 {
		t.Errorf("%d dead letters, want exactly 1", n)
	}
	if got := dls[0].Headers().Get(HeaderDeadLetterReason); got != ReasonPermanent {
		t.Errorf("dead letter reason %q, want %q", got, ReasonPermanent)
	}
	if got := dls[0].Headers().Get(HeaderDeadLetterError); got != "charge order: card declined" {
		t.Errorf("dead letter error %q", got)
	}
	cons, err := e.js.Consumer(ctx, "events", "permanent")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 2 || info.NumRedelivered != 0 || info.NumAckPending != 0 {
		t.Errorf("broker delivered %d times for 2 messages (redelivered %d, ack pending %d); want each delivered once",
			info.Delivered.Consumer, info.NumRedelivered, info.NumAckPending)
	}
}

func TestDecodeErrorIsPermanent(t *testing.T) {
	m := &Message{Header: nats.Header{HeaderContentType: {ContentTypeJSON}}, Data: []byte("{not json"), codec: DefaultCodec{}}
	var o order
	err := m.Decode(&o)
	var de *DecodeError
	if !errors.Is(err, ErrUndecodable) || !resilience.IsPermanent(err) || !errors.As(err, &de) {
		t.Errorf("Decode of a bad payload: %v, want a *DecodeError matching ErrUndecodable and resilience.ErrPermanent", err)
	}
}

func TestRetriesFollowBackoffThenMaxDeliverDeadLetters(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := publisher(t, e).Publish(ctx, "events.flaky", order{ID: "o-3"}); err != nil {
		t.Fatal(err)
	}
	const step = 60 * time.Millisecond
	var (
		mu         sync.Mutex
		deliveries []uint64
		seen       []time.Time
	)
	cfg := fastConfig("flaky")
	cfg.MaxDeliver = 4
	cfg.Backoff, cfg.MaxBackoff = step, 4*step
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		mu.Lock()
		deliveries = append(deliveries, m.NumDelivered)
		seen = append(seen, time.Now())
		mu.Unlock()
		return errors.New("downstream unavailable")
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	dls := deadLetters(t, e.js, 1)
	stop()

	if got := dls[0].Headers().Get(HeaderDeadLetterReason); got != ReasonMaxDeliver {
		t.Errorf("reason %q, want %q", got, ReasonMaxDeliver)
	}
	if got := dls[0].Headers().Get(HeaderDeliveries); got != "4" {
		t.Errorf("deliveries header %q, want 4", got)
	}
	if got := dls[0].Headers().Get(HeaderDeadLetterError); got != "downstream unavailable" {
		t.Errorf("error header %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(deliveries) != "[1 2 3 4]" {
		t.Fatalf("handler saw deliveries %v; want [1 2 3 4]", deliveries)
	}
	for i := 1; i < len(seen); i++ {
		// The broker never redelivers before the requested delay: Backoff
		// doubling per delivery, with equal jitter at least half of it.
		full := min(step<<(i-1), cfg.MaxBackoff)
		if gap := seen[i].Sub(seen[i-1]); gap < full/2 {
			t.Errorf("delivery %d came %v after the previous, before the backoff's least %v (half of %v)", i+1, gap, full/2, full)
		}
	}
}

func TestDeadLetterThatCannotBeStoredIsRetried(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := publisher(t, e).Publish(ctx, "events.x", order{ID: "o-4"}); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig("nodlq")
	cfg.DeadLetterSubject = "nowhere.dead" // no stream captures it
	var calls atomic.Int32
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		calls.Add(1)
		return resilience.Permanent(errors.New("refused"))
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	vitamintest.Eventually(t, 20*time.Second, func() error {
		if n := calls.Load(); n < 2 {
			return fmt.Errorf("handler ran %d times; the message must come back while its dead letter cannot be stored", n)
		}
		return nil
	})
}

func TestGracefulStopWaitsForInFlightHandlers(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := publisher(t, e).Publish(ctx, "events.slow", order{ID: "o-5"}); err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	c, err := NewConsumer(ctx, e.js, fastConfig("graceful"), func(ctx context.Context, m *Message) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- c.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("Stop returned before the handler finished")
	}
	settled(t, e.js, "events", "graceful", 10*time.Second)
}

func TestLongHandlerIsNotRedelivered(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := publisher(t, e).Publish(ctx, "events.long", order{ID: "o-6"}); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig("long")
	cfg.AckWait = 200 * time.Millisecond
	var deliveries atomic.Int32
	done := make(chan struct{})
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		deliveries.Add(1)
		if m.NumDelivered == 1 {
			time.Sleep(5 * cfg.AckWait) // the work: five times the ack wait
			close(done)
		}
		return nil
	}, WithStore(nil))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	<-done
	settled(t, e.js, "events", "long", 10*time.Second)
	if n := deliveries.Load(); n != 1 {
		t.Errorf("delivered %d times, want 1: in-progress signals must keep a running handler's message", n)
	}
}

// TestCrashBetweenSideEffectAndAck: the first instance records the side
// effect and the key, then dies (its connection is closed) before acking.
// The second instance gets the redelivery and must not redo the effect.
// With the KV and SQL stores the first instance settles a batch (one
// commit for several messages) before the crash: every message of it is
// redelivered, found done and not run again.
func TestCrashBetweenSideEffectAndAck(t *testing.T) {
	for _, kind := range []string{"memory", "kv", "sql"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			ctx := testCtx(t)
			var store Store
			var db sqlDB
			switch kind {
			case "memory":
				store, _ = NewMemoryStore(MemoryStoreConfig{})
			case "kv":
				s, err := NewKVStore(ctx, e.js, KVStoreConfig{})
				if err != nil {
					t.Fatal(err)
				}
				store = s
			case "sql":
				db = newSQLDB(t)
				store = db.store
			}
			const n = 20
			p := publisher(t, e)
			for i := range n {
				if _, err := p.Publish(ctx, "events.pay", order{ID: strconv.Itoa(i)}, WithMsgID("pay-"+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			effects := newCounter()
			var crashed atomic.Bool
			handler := func(instance string) Handler {
				return Typed(func(ctx context.Context, m *Message, o order) error {
					if instance == "a" && crashed.Load() {
						return errors.New("instance a is dead") // a dead process runs nothing
					}
					if kind == "sql" {
						return db.effect(ctx, m.Tx(), m.Key)
					}
					effects.add(m.Key)
					return nil
				})
			}
			// Instance A: crashes after the first message's mark.
			// One worker, so that the crash interrupts exactly one message.
			ncA := e.srv.Connect(t)
			crash := make(chan struct{})
			cfgA := fastConfig("pay")
			cfgA.Workers = 1
			metricsA := vitamintest.NewMetrics(t)
			a, err := NewConsumer(ctx, newJS(t, ncA), cfgA, handler("a"), WithStore(storeOn(t, kind, store, ncA)),
				WithMeterProvider(metricsA.Provider),
				withBeforeAck(func(m *Message) bool {
					if crashed.CompareAndSwap(false, true) {
						ncA.Close()
						close(crash)
						return true // the ack goes nowhere: the connection is gone
					}
					return !crashed.Load()
				}))
			if err != nil {
				t.Fatal(err)
			}
			stopA := run(t, a)
			<-crash
			stopA()

			metrics := vitamintest.NewMetrics(t)
			withMetrics := WithMeterProvider(metrics.Provider)
			b, err := NewConsumer(ctx, e.js, fastConfig("pay"), handler("b"), WithStore(store), withMetrics)
			if err != nil {
				t.Fatal(err)
			}
			stopB := run(t, b)
			settled(t, e.js, "events", "pay", 20*time.Second)
			stopB()

			processedA := metricsA.Sum(t, "vitamin.messaging.processed")
			if got := metrics.Sum(t, "vitamin.messaging.duplicates"); got != processedA || got < 1 {
				t.Errorf("instance b suppressed %d duplicates, want the redeliveries of the %d messages a processed", got, processedA)
			}
			if got := metrics.Sum(t, "vitamin.messaging.processed"); got != n-processedA {
				t.Errorf("instance b processed %d messages, want %d", got, n-processedA)
			}
			for i := range n {
				key := "pay-" + strconv.Itoa(i)
				got := effects.get(key)
				if kind == "sql" {
					got = db.count(t, key)
				}
				if got != 1 {
					t.Errorf("%s: side effect ran %d times, want exactly once", key, got)
				}
			}
		})
	}
}

// storeOn returns the store instance A uses: the same memory or SQL store
// as B, and for KV a store over A's own connection, so that A's crash
// takes its store connection down too.
func storeOn(t testing.TB, kind string, shared Store, nc *nats.Conn) Store {
	if kind != "kv" {
		return shared
	}
	s, err := NewKVStore(testCtx(t), newJS(t, nc), KVStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
