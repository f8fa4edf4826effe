package messaging

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// remoteParent returns a context holding a sampled remote span context, as
// if a request had come in with a traceparent header.
func remoteParent(t *testing.T) (context.Context, trace.TraceID, trace.SpanID) {
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(testCtx(t), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true}))
	return ctx, traceID, spanID
}

func recorder(t *testing.T) (*tracetest.SpanRecorder, trace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp
}

// TestConsumerSpanContinuesTrace: the consumer's span is a child of the
// publisher's trace context and carries the messaging attributes.
func TestConsumerSpanContinuesTrace(t *testing.T) {
	e := newEnv(t)
	prop := propagation.TraceContext{}
	p, err := NewPublisher(e.js, PublisherConfig{}, WithTracing(tracingnats.WithPropagator(prop)))
	if err != nil {
		t.Fatal(err)
	}
	parent, traceID, spanID := remoteParent(t)
	if _, err := p.Publish(parent, "events.traced", order{ID: "o-7"}, WithMsgID("traced-1")); err != nil {
		t.Fatal(err)
	}

	rec, tp := recorder(t)
	handled := make(chan trace.SpanContext, 1)
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("traced"), func(ctx context.Context, m *Message) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	}, WithTracing(tracingnats.WithPropagator(prop), tracingnats.WithTracerProvider(tp)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	sc := <-handled
	stop()

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanContext().TraceID() != traceID || s.Parent().SpanID() != spanID || sc.SpanID() != s.SpanContext().SpanID() {
		t.Errorf("span %v with parent %v, handler saw %v: want a child of %v/%v", s.SpanContext(), s.Parent(), sc, traceID, spanID)
	}
	if s.SpanKind() != trace.SpanKindConsumer || s.Name() != "process events.traced" {
		t.Errorf("span %q of kind %v, want a consumer span named %q", s.Name(), s.SpanKind(), "process events.traced")
	}
	want := map[attribute.Key]string{
		"messaging.system":              "nats",
		"messaging.destination.name":    "events.traced",
		"messaging.operation.name":      "process",
		"messaging.operation.type":      "process",
		"messaging.message.id":          "traced-1",
		"messaging.consumer.group.name": "traced",
	}
	for _, kv := range s.Attributes() {
		if v, ok := want[kv.Key]; ok && kv.Value.AsString() == v {
			delete(want, kv.Key)
		}
	}
	if len(want) != 0 {
		t.Errorf("span lacks attributes %v; has %v", want, s.Attributes())
	}
}

// TestPublisherSpanIsTheParentOfTheConsumerSpan: Publish and PublishAsync
// each run in a producer span, a child of the caller's span, and the
// handler's consumer span is the child of that producer span.
func TestPublisherSpanIsTheParentOfTheConsumerSpan(t *testing.T) {
	e := newEnv(t)
	rec, tp := recorder(t)
	tracing := WithTracing(tracingnats.WithTracerProvider(tp), tracingnats.WithPropagator(propagation.TraceContext{}))
	p, err := NewPublisher(e.js, PublisherConfig{}, tracing)
	if err != nil {
		t.Fatal(err)
	}
	parent, traceID, spanID := remoteParent(t)
	if _, err := p.Publish(parent, "events.sync", order{ID: "o-8"}); err != nil {
		t.Fatal(err)
	}
	f, err := p.PublishAsync(parent, "events.async", order{ID: "o-9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Result(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 2)
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("parents"), func(context.Context, *Message) error {
		handled <- struct{}{}
		return nil
	}, tracing)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	<-handled
	<-handled
	stop()
	if err := p.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	for _, subject := range []string{"events.sync", "events.async"} {
		pub, proc := byName["publish "+subject], byName["process "+subject]
		if pub == nil || proc == nil {
			t.Fatalf("%s: want spans %q and %q, got %v", subject, "publish "+subject, "process "+subject, rec.Ended())
		}
		if pub.SpanKind() != trace.SpanKindProducer || pub.Parent().SpanID() != spanID || pub.SpanContext().TraceID() != traceID {
			t.Errorf("%s: producer span of kind %v with parent %v, want a producer child of %v", subject, pub.SpanKind(), pub.Parent(), spanID)
		}
		if proc.Parent().SpanID() != pub.SpanContext().SpanID() || proc.SpanContext().TraceID() != traceID {
			t.Errorf("%s: consumer span's parent %v, want the producer span %v", subject, proc.Parent().SpanID(), pub.SpanContext().SpanID())
		}
	}
}

// TestWithoutTracing: no trace headers are written and no span is started.
func TestWithoutTracing(t *testing.T) {
	e := newEnv(t)
	rec, tp := recorder(t)
	p, err := NewPublisher(e.js, PublisherConfig{}, WithTracing(tracingnats.WithTracerProvider(tp)), WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	parent, _, _ := remoteParent(t)
	if _, err := p.Publish(parent, "events.untraced", order{ID: "o-10"}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *Message, 1)
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("untraced"), func(ctx context.Context, m *Message) error {
		if trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("the handler runs in a span")
		}
		got <- m
		return nil
	}, WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)
	m := <-got
	stop()
	if v := m.Header.Get("traceparent"); v != "" {
		t.Errorf("traceparent %q written WithoutTracing", v)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans ended, want none", n)
	}
}
