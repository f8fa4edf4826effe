package tracingnats_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracingnats"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// *tracing.Telemetry is what users give WithTelemetry.
var _ tracingnats.Telemetry = (*tracing.Telemetry)(nil)

func newTracer(t *testing.T, p propagation.TextMapPropagator) (*tracingnats.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tracingnats.New(tracingnats.WithTracerProvider(tp), tracingnats.WithPropagator(p)), rec
}

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// receive subscribes to subj with the tracer's handler and returns the
// span contexts the handler runs in.
func receive(t *testing.T, nc *nats.Conn, tr *tracingnats.Tracer, subj string, fail error) <-chan trace.SpanContext {
	got := make(chan trace.SpanContext, 1)
	sub, err := nc.Subscribe(subj, tr.MsgHandler(context.Background(), func(ctx context.Context, _ *nats.Msg) error {
		got <- trace.SpanContextFromContext(ctx)
		return fail
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func wait(t *testing.T, ch <-chan trace.SpanContext) trace.SpanContext {
	t.Helper()
	select {
	case sc := <-ch:
		return sc
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run")
		return trace.SpanContext{}
	}
}

func TestTraceHeadersAreReadInAnyLetterCase(t *testing.T) {
	ns := vitamintest.StartNATS(t)
	nc := ns.Connect(t)
	const traceHex, spanHex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	b3, err := tracing.NewPropagator(tracing.PropagatorB3Multi)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		prop   propagation.TextMapPropagator
		header nats.Header
	}{
		{"lowercase traceparent", w3c, nats.Header{"traceparent": {"00-" + traceHex + "-" + spanHex + "-01"}}},
		{"uppercase TRACEPARENT", w3c, nats.Header{"TRACEPARENT": {"00-" + traceHex + "-" + spanHex + "-01"}}},
		{"mixed-case Traceparent", w3c, nats.Header{"Traceparent": {"00-" + traceHex + "-" + spanHex + "-01"}}},
		{"mixed-case TraceParent", w3c, nats.Header{"TraceParent": {"00-" + traceHex + "-" + spanHex + "-01"}}},
		{"Sleuth-style X-B3 headers", b3,
			nats.Header{"X-B3-TraceId": {traceHex}, "X-B3-SpanId": {spanHex}, "X-B3-Sampled": {"1"}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, rec := newTracer(t, tt.prop)
			subj := "case." + string(rune('a'+i))
			got := receive(t, nc, tr, subj, nil)
			if err := nc.PublishMsg(&nats.Msg{Subject: subj, Header: tt.header, Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			sc := wait(t, got)
			if sc.TraceID().String() != traceHex {
				t.Errorf("handler ran in trace %s, want %s", sc.TraceID(), traceHex)
			}
			vitamintest.Eventually(t, 5*time.Second, func() error {
				if len(rec.Ended()) == 0 {
					return errors.New("consumer span not ended")
				}
				return nil
			})
			span := rec.Ended()[0]
			if span.Parent().SpanID().String() != spanHex || !span.Parent().IsRemote() {
				t.Errorf("consumer span parent = %s (remote %v), want the producer's %s", span.Parent().SpanID(), span.Parent().IsRemote(), spanHex)
			}
		})
	}
}

func TestPublishAndProcessSpansFollowMessagingConventions(t *testing.T) {
	ns := vitamintest.StartNATS(t)
	nc := ns.Connect(t)
	tr, rec := newTracer(t, w3c)
	got := receive(t, nc, tr, "orders.placed", errors.New("out of stock"))

	msg := nats.NewMsg("orders.placed")
	msg.Header.Set(nats.MsgIdHdr, "order-7")
	msg.Data = []byte(`{"id":7}`)
	if err := tr.Publish(context.Background(), nc, msg); err != nil {
		t.Fatal(err)
	}
	wait(t, got)
	vitamintest.Eventually(t, 5*time.Second, func() error {
		if len(rec.Ended()) < 2 {
			return errors.New("spans not ended")
		}
		return nil
	})
	var pub, proc sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			pub = s
		case trace.SpanKindConsumer:
			proc = s
		}
	}
	if pub == nil || proc == nil {
		t.Fatalf("want a producer and a consumer span, got %v", rec.Ended())
	}
	if pub.Name() != "publish orders.placed" || proc.Name() != "process orders.placed" {
		t.Errorf("span names %q, %q", pub.Name(), proc.Name())
	}
	if proc.Parent().SpanID() != pub.SpanContext().SpanID() || proc.SpanContext().TraceID() != pub.SpanContext().TraceID() {
		t.Errorf("consumer span is not the child of the producer span")
	}
	for _, s := range []sdktrace.ReadOnlySpan{pub, proc} {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		for k, v := range map[string]string{
			"messaging.system":            "nats",
			"messaging.destination.name":  "orders.placed",
			"messaging.message.id":        "order-7",
			"messaging.message.body.size": "8",
		} {
			if attrs[k] != v {
				t.Errorf("%s: %s = %q, want %q", s.Name(), k, attrs[k], v)
			}
		}
	}
	if proc.Status().Code != codes.Error || len(proc.Events()) == 0 {
		t.Errorf("consumer span status %v, events %v: want the handler's error recorded", proc.Status(), proc.Events())
	}
}

func TestHeaderCarrierSetReplacesOtherCases(t *testing.T) {
	h := nats.Header{"Traceparent": {"old"}, "Other": {"x"}}
	c := tracingnats.HeaderCarrier(h)
	c.Set("traceparent", "new")
	if len(h) != 2 || h.Get("traceparent") != "new" || h.Get("Traceparent") != "" {
		t.Errorf("headers after Set = %v, want one traceparent=new and Other", h)
	}
	if c.Get("TRACEPARENT") != "new" || c.Get("missing") != "" {
		t.Errorf("Get in another case failed: %v", h)
	}
	if len(c.Keys()) != 2 {
		t.Errorf("Keys() = %v", c.Keys())
	}
}

// TestProcessSpansMatchStartProcess: ProcessSpans starts the same spans as
// StartProcess (name, kind, parent, attributes), also on more subjects than
// it keeps options for.
func TestProcessSpansMatchStartProcess(t *testing.T) {
	tr, rec := newTracer(t, w3c)
	group := semconv.MessagingConsumerGroupName("billing")
	ps := tr.ProcessSpans(group)
	ctx := context.Background()
	attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.Emit()
		}
		return m
	}
	for i := range 300 {
		subj := fmt.Sprintf("orders.%d", i)
		msg := nats.NewMsg(subj)
		msg.Data = []byte(`{"id":7}`)
		if i%2 == 0 {
			msg.Header.Set(nats.MsgIdHdr, fmt.Sprint("order-", i))
		}
		_, pub := tr.StartPublish(ctx, msg)
		tracingnats.End(pub, nil)
		_, a := tr.StartProcess(ctx, subj, msg.Header, len(msg.Data), group)
		tracingnats.End(a, nil)
		_, b := ps.Start(ctx, subj, msg.Header, len(msg.Data))
		tracingnats.End(b, errors.New("refused"))

		ended := rec.Ended()
		want, got := ended[len(ended)-2], ended[len(ended)-1]
		if got.Name() != "process "+subj || got.Name() != want.Name() || got.SpanKind() != trace.SpanKindConsumer {
			t.Fatalf("ProcessSpans span %q of kind %v, want %q as StartProcess", got.Name(), got.SpanKind(), want.Name())
		}
		if got.Parent().SpanID() != pub.SpanContext().SpanID() {
			t.Fatalf("%s: ProcessSpans span is not the child of the producer span", subj)
		}
		wantAttrs, gotAttrs := attrs(want), attrs(got)
		delete(gotAttrs, "error.type")
		if diff := cmp.Diff(wantAttrs, gotAttrs); diff != "" {
			t.Fatalf("%s: attributes (-StartProcess +ProcessSpans):\n%s", subj, diff)
		}
		if got.Status().Code != codes.Error {
			t.Fatalf("%s: the error given to End is not recorded", subj)
		}
	}
}
