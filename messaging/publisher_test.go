package messaging

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
	"github.com/vitamin-go/vitamin/vitamintest"
)

type order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func TestPublishSameIDTwiceIsStoredOnce(t *testing.T) {
	e := newEnv(t)
	p, err := NewPublisher(e.js, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	first, err := p.Publish(ctx, "events.order", order{ID: "o-1"}, WithMsgID("order-o-1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Publish(ctx, "events.order", order{ID: "o-1"}, WithMsgID("order-o-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Errorf("acks %+v then %+v, want the second to be a duplicate of the first", first, second)
	}
	if n := streamMsgs(t, e.js, "events"); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

func TestPublishSetsHeaders(t *testing.T) {
	e := newEnv(t)
	prop := propagation.TraceContext{}
	p, err := NewPublisher(e.js, PublisherConfig{}, WithCaller("checkout"), WithTracing(tracingnats.WithPropagator(prop)))
	if err != nil {
		t.Fatal(err)
	}
	parent, traceID, _ := remoteParent(t)
	if _, err := p.Publish(parent, "events.order", order{ID: "o-1", Total: 3}); err != nil {
		t.Fatal(err)
	}

	got := make(chan *Message, 1)
	var gotTrace trace.TraceID
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("headers"), func(ctx context.Context, m *Message) error {
		gotTrace = trace.SpanContextFromContext(ctx).TraceID()
		got <- m
		return nil
	}, WithTracing(tracingnats.WithPropagator(prop)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	m := <-got
	stop()
	if m.ID == "" || m.Header.Get(HeaderMsgID) != m.ID {
		t.Errorf("message ID %q, header %q: want a generated ID in Nats-Msg-Id", m.ID, m.Header.Get(HeaderMsgID))
	}
	if m.Caller != "checkout" || m.Header.Get(HeaderContentType) != ContentTypeJSON {
		t.Errorf("caller %q, content type %q", m.Caller, m.Header.Get(HeaderContentType))
	}
	if m.Header.Get("traceparent") == "" || gotTrace != traceID {
		t.Errorf("traceparent %q, handler trace %v; want trace %v", m.Header.Get("traceparent"), gotTrace, traceID)
	}
	var o order
	if err := m.Decode(&o); err != nil || o.ID != "o-1" || o.Total != 3 {
		t.Errorf("decoded %+v, %v", o, err)
	}
}

func TestPublishAsyncBoundsPendingAndLosesNothing(t *testing.T) {
	e := newEnv(t)
	p, err := NewPublisher(e.js, PublisherConfig{MaxPending: 16})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	const n = 1000
	futures := make([]*PublishFuture, 0, n)
	for i := range n {
		f, err := p.PublishAsync(ctx, "events.order", order{ID: fmt.Sprint(i)}, WithMsgID(fmt.Sprint("o-", i)))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.slots) > 16 {
			t.Fatalf("%d pending, want at most 16", len(p.slots))
		}
		futures = append(futures, f)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		if _, err := f.Result(ctx); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if got := streamMsgs(t, e.js, "events"); got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
	if _, err := p.Publish(ctx, "events.order", order{}); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after Close: %v, want ErrClosed", err)
	}
}

func TestPublishToNoStreamFailsAfterRetries(t *testing.T) {
	e := newEnv(t)
	p, err := NewPublisher(e.js, PublisherConfig{MaxAttempts: 3, Backoff: time.Millisecond, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(testCtx(t), "nowhere.order", order{})
	var pe *PublishError
	if !errors.As(err, &pe) || pe.Subject != "nowhere.order" || pe.MsgID == "" {
		t.Errorf("publish to a subject no stream captures: %v", err)
	}
}

// A stream whose leader changed while an attempt was being replicated
// answers the retry with 409 "duplicate message id is in process". The
// publisher asks again (the test answers on the wire as the stream does)
// and gets the duplicate ack once the first attempt is stored.
func TestPublishRetriesWhileTheSameIDIsInProcess(t *testing.T) {
	e := newEnv(t)
	var ids []string
	sub, err := e.nc.Subscribe("electing.order", func(m *nats.Msg) {
		ids = append(ids, m.Header.Get(HeaderMsgID))
		if len(ids) == 1 {
			_ = m.Respond([]byte(`{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`))
			return
		}
		_ = m.Respond([]byte(`{"stream":"orders","seq":7,"duplicate":true}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p, err := NewPublisher(e.js, PublisherConfig{MaxAttempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := p.Publish(testCtx(t), "electing.order", order{ID: "o-1"}, WithMsgID("order-o-1"))
	if err != nil {
		t.Fatalf("publish while the ID is in process: %v", err)
	}
	if !ack.Duplicate || ack.Sequence != 7 {
		t.Errorf("ack %+v, want the duplicate ack of sequence 7", ack)
	}
	if len(ids) != 2 || ids[0] != "order-o-1" || ids[1] != "order-o-1" {
		t.Errorf("the responder saw msg ids %q, want order-o-1 twice", ids)
	}
}

// While no stream answers (a stream electing a leader sends no responders
// back), one attempt keeps asking until its Timeout: a publish made before
// its stream exists is stored, in one attempt, once the stream is there.
func TestPublishAsksAgainWhileNoStreamAnswers(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	nc := e.srv.Connect(t)
	p, err := NewPublisher(newJS(t, nc), PublisherConfig{MaxAttempts: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.PublishAsync(ctx, "late.order", order{ID: "o-2"})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		ack any
		err error
	}
	done := make(chan result, 1)
	go func() {
		ack, err := p.Publish(ctx, "late.order", order{ID: "o-1"})
		done <- result{ack, err}
	}()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		// More than nats.go's own retries on no responders (twice, 250ms
		// apart) would ask.
		if n := nc.Stats().OutMsgs; n < 12 {
			return fmt.Errorf("the publisher sent %d messages, waiting for both publishes to ask six times", n)
		}
		return nil
	})
	if _, err := EnsureStream(ctx, e.js, StreamConfig{Name: "late", Subjects: []string{"late.>"}}); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil {
		t.Errorf("publish made before its stream existed: %v", r.err)
	}
	if _, err := f.Result(ctx); err != nil {
		t.Errorf("asynchronous publish made before its stream existed: %v", err)
	}
	if n := streamMsgs(t, e.js, "late"); n != 2 {
		t.Errorf("the stream holds %d messages, want 2", n)
	}
}

func TestInvalidSettingsFailAtConstruction(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	h := func(context.Context, *Message) error { return nil }
	for _, tc := range []struct {
		name, field string
		err         error
	}{
		{"stream", "StreamConfig.Name", func() error { _, err := EnsureStream(ctx, e.js, StreamConfig{Subjects: []string{"x"}}); return err }()},
		{"duplicates", "StreamConfig.Duplicates", func() error {
			_, err := EnsureStream(ctx, e.js, StreamConfig{Name: "x", Subjects: []string{"x"}, Duplicates: time.Hour, MaxAge: time.Minute})
			return err
		}()},
		{"publisher", "PublisherConfig.MaxPending", func() error { _, err := NewPublisher(e.js, PublisherConfig{MaxPending: -1}); return err }()},
		{"publisher backoff", "PublisherConfig.MaxBackoff", func() error {
			_, err := NewPublisher(e.js, PublisherConfig{Backoff: time.Second, MaxBackoff: time.Millisecond})
			return err
		}()},
		{"codec", "WithCodec", func() error { _, err := NewPublisher(e.js, PublisherConfig{}, WithCodec(nil)); return err }()},
		{"durable", "ConsumerConfig.Durable", func() error { _, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events"}, h); return err }()},
		{"ackwait", "ConsumerConfig.AckWait", func() error {
			_, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events", Durable: "d", AckWait: time.Millisecond}, h)
			return err
		}()},
		{"consumer backoff", "ConsumerConfig.Backoff", func() error {
			_, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events", Durable: "d", Backoff: -time.Second}, h)
			return err
		}()},
		{"consumer max backoff", "ConsumerConfig.MaxBackoff", func() error {
			_, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events", Durable: "d", Backoff: time.Minute, MaxBackoff: time.Second}, h)
			return err
		}()},
		{"handler", "handler", func() error { _, err := NewConsumer(ctx, e.js, fastConfig("d"), nil); return err }()},
		{"commit batch", "ConsumerConfig.CommitBatch", func() error {
			_, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events", Durable: "d", CommitBatch: 1001}, h)
			return err
		}()},
		{"commit wait", "ConsumerConfig.CommitWait", func() error {
			_, err := NewConsumer(ctx, e.js, ConsumerConfig{Stream: "events", Durable: "d", CommitWait: 2 * time.Second}, h)
			return err
		}()},
		{"sql table", "db", func() error { _, err := NewSQLStore(ctx, nil, SQLStoreConfig{}); return err }()},
		{"memory", "MemoryStoreConfig.MaxKeys", func() error { _, err := NewMemoryStore(MemoryStoreConfig{MaxKeys: -1}); return err }()},
	} {
		var fe *FieldError
		if !errors.Is(tc.err, ErrInvalidConfig) || !errors.As(tc.err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want a *FieldError for %s matching ErrInvalidConfig", tc.name, tc.err, tc.field)
		}
	}
}

func TestEnsureStreamReportsConflict(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	if _, err := EnsureStream(ctx, e.js, StreamConfig{Name: "events", Subjects: []string{"events.>"}, Duplicates: time.Minute}); err != nil {
		t.Fatalf("updating the duplicates window: %v", err)
	}
	_, err := EnsureStream(ctx, e.js, StreamConfig{Name: "events", Subjects: []string{"events.>"}, Memory: true})
	var ce *StreamConflictError
	if !errors.Is(err, ErrStreamConflict) || !errors.As(err, &ce) || len(ce.Fields) == 0 || ce.Fields[0] != "Memory" {
		t.Errorf("changing the storage type: %v, want a StreamConflictError naming Memory", err)
	}
}
