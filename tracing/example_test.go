package tracing_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing"
)

// Setup installs the service's telemetry as the OpenTelemetry globals and
// returns the function that flushes it on the way out. Here nothing is
// exported; in production, set Exporter and Endpoint (or the standard
// OTEL_EXPORTER_OTLP_* variables).
func ExampleSetup() {
	ctx := context.Background()
	shutdown, err := tracing.Setup(ctx, tracing.Config{
		ServiceName:    "orders",
		ServiceVersion: "1.4.0",
		InstanceID:     "orders-10.0.0.7-8080",
		Exporter:       tracing.ExporterNone,
		SampleRatio:    tracing.Ratio(1),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	}()

	_, span := otel.Tracer("orders").Start(ctx, "place order")
	defer span.End()
	fmt.Println("sampled:", span.SpanContext().IsSampled())
	fmt.Println("propagates:", slices.Sorted(slices.Values(otel.GetTextMapPropagator().Fields())))
	// Output:
	// sampled: true
	// propagates: [baggage traceparent tracestate]
}

// Invalid settings fail at construction, naming the field.
func ExampleNew_invalid() {
	_, err := tracing.New(context.Background(), tracing.Config{ServiceName: "orders", SampleRatio: tracing.Ratio(2)})
	fmt.Println(err)
	// Output:
	// tracing: invalid configuration: SampleRatio = 2: must be between 0 and 1
}

// A service that talks to Zipkin or Spring Cloud Sleuth peers joins their
// traces by adding B3 to the W3C formats.
func ExampleNewPropagator() {
	p, err := tracing.NewPropagator(tracing.PropagatorTraceContext, tracing.PropagatorBaggage, tracing.PropagatorB3Multi)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(slices.Sorted(slices.Values(p.Fields())))
	// Output:
	// [baggage traceparent tracestate x-b3-flags x-b3-parentspanid x-b3-sampled x-b3-spanid x-b3-traceid]
}

// A B3 "deny" that came without IDs is honoured: the service's span is
// not sampled, and the next hop is told not to sample either, with the
// trace's IDs for its logs.
func ExampleNewPropagator_b3Deny() {
	tel, err := tracing.New(context.Background(), tracing.Config{
		ServiceName: "orders", Exporter: tracing.ExporterNone, Propagators: []string{tracing.PropagatorB3Multi},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()

	in := propagation.MapCarrier{"b3": "0"}
	ctx := tel.Propagator().Extract(context.Background(), in)
	ctx, span := tel.TracerProvider().Tracer("orders").Start(ctx, "GET /orders")
	defer span.End()

	out := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx, out)
	fmt.Println("sampled:", span.SpanContext().IsSampled())
	fmt.Println("x-b3-sampled:", out.Get("x-b3-sampled"))
	fmt.Println("x-b3-traceid is the span's:", out.Get("x-b3-traceid") == span.SpanContext().TraceID().String())
	// Output:
	// sampled: false
	// x-b3-sampled: 0
	// x-b3-traceid is the span's: true
}

// Every record logged with a context that carries a span gets its IDs.
func ExampleNewLogHandler() {
	h := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{} // keep the output stable
		}
		return a
	}})
	logger := slog.New(tracing.NewLogHandler(h))

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	logger.InfoContext(ctx, "order placed", "order", 7)
	logger.InfoContext(context.Background(), "no span here")
	// Output:
	// {"level":"INFO","msg":"order placed","order":7,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
	// {"level":"INFO","msg":"no span here"}
}
