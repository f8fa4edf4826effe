package tracingnats_test

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// The producer writes its span context and baggage into the message
// headers; the consumer's span continues the same trace as its child.
// With a connection, Tracer.Publish and Tracer.MsgHandler do the same
// around nc.PublishMsg and nc.Subscribe.
func Example_propagation() {
	ctx := context.Background()
	tel, err := tracing.New(ctx, tracing.Config{ServiceName: "orders"})
	if err != nil {
		panic(err)
	}
	defer func() { _ = tel.Shutdown(ctx) }()
	tr := tracingnats.New(tracingnats.WithTelemetry(tel))

	// Producer.
	tenant, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(tenant)
	msg := nats.NewMsg("orders.placed")
	msg.Data = []byte(`{"id":7}`)
	pubCtx, pub := tr.StartPublish(baggage.ContextWithBaggage(ctx, bag), msg)
	_ = pubCtx // publish msg here, e.g. nc.PublishMsg(msg) or js.PublishMsg(pubCtx, msg)
	tracingnats.End(pub, nil)
	fmt.Println("traceparent header set:", msg.Header.Get("traceparent") != "")

	// Consumer, on the other side of NATS.
	procCtx, proc := tr.StartProcess(ctx, msg.Subject, msg.Header, len(msg.Data))
	defer tracingnats.End(proc, nil)
	fmt.Println("same trace:", proc.SpanContext().TraceID() == pub.SpanContext().TraceID())
	fmt.Println("child of the producer:", proc.(sdktrace.ReadOnlySpan).Parent().SpanID() == pub.SpanContext().SpanID())
	fmt.Println("baggage:", baggage.FromContext(procCtx).Member("tenant").Value())
	// Output:
	// traceparent header set: true
	// same trace: true
	// child of the producer: true
	// baggage: acme
}
