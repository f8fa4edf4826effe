package messaging

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestConsumerSpanContinuesTrace: the consumer's span is a child of the
// publisher's trace context and carries the messaging attributes.
func TestConsumerSpanContinuesTrace(t *testing.T) {
	e := newEnv(t)
	prop := propagation.TraceContext{}
	p, err := NewPublisher(e.js, PublisherConfig{}, WithPropagator(prop))
	if err != nil {
		t.Fatal(err)
	}
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	parent := trace.ContextWithSpanContext(testCtx(t), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true}))
	if _, err := p.Publish(parent, "events.traced", order{ID: "o-7"}, WithMsgID("traced-1")); err != nil {
		t.Fatal(err)
	}

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	handled := make(chan trace.SpanContext, 1)
	c, err := NewConsumer(testCtx(t), e.js, fastConfig("traced"), func(ctx context.Context, m *Message) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	}, WithPropagator(prop), WithTracerProvider(tp))
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
	if s.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span kind %v, want consumer", s.SpanKind())
	}
	want := map[attribute.Key]string{
		"messaging.system":              "nats",
		"messaging.destination.name":    "events.traced",
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
