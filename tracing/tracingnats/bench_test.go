package tracingnats_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// BenchmarkStartProcess is the cost of a consumer span that is not
// recorded (the OpenTelemetry globals before tracing.Setup), per message:
// StartProcess builds its options each time, ProcessSpans once per
// subject.
func BenchmarkStartProcess(b *testing.B) {
	tr := tracingnats.New()
	h := nats.Header{nats.MsgIdHdr: {"order-7"}, "Content-Type": {"application/json"}}
	group := semconv.MessagingConsumerGroupName("billing")
	for _, bc := range []struct {
		name  string
		start func() trace.Span
	}{
		{"StartProcess", func() trace.Span {
			_, span := tr.StartProcess(context.Background(), "orders.placed", h, 20, group)
			return span
		}},
		{"ProcessSpans", func() func() trace.Span {
			ps := tr.ProcessSpans(group)
			return func() trace.Span {
				_, span := ps.Start(context.Background(), "orders.placed", h, 20)
				return span
			}
		}()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				tracingnats.End(bc.start(), nil)
			}
		})
	}
}
