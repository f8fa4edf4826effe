package messaging

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Publisher or a Consumer with what only code can give.
// Each option says which of the two it applies to; the other ignores it.
// Options are applied once, at construction.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	meter      metric.MeterProvider
	tracer     trace.TracerProvider
	propagator propagation.TextMapPropagator
	caller     string
	codec      Codec
	store      Store
	keyFunc    func(*Message) string
	backoff    func(attempt int) time.Duration
	beforeAck  func(*Message) bool // tests: runs after the mark; false skips the ack
}

func buildOptions(opts []Option) options {
	o := options{codec: DefaultCodec{}}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.meter == nil {
		o.meter = otel.GetMeterProvider()
	}
	if o.tracer == nil {
		o.tracer = otel.GetTracerProvider()
	}
	if o.propagator == nil {
		o.propagator = otel.GetTextMapPropagator()
	}
	return o
}

// WithLogger logs through l; nil (the default) is silent. Publisher and
// Consumer.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider records metrics through p instead of
// otel.GetMeterProvider(). Publisher and Consumer.
func WithMeterProvider(p metric.MeterProvider) Option { return func(o *options) { o.meter = p } }

// WithTracerProvider starts spans through p instead of
// otel.GetTracerProvider(). Publisher and Consumer.
func WithTracerProvider(p trace.TracerProvider) Option { return func(o *options) { o.tracer = p } }

// WithPropagator injects (Publisher) and extracts (Consumer) trace context
// through p instead of otel.GetTextMapPropagator().
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *options) { o.propagator = p }
}

// WithCaller names the publishing service; it is sent in the
// Vitamin-Caller header. Publisher.
func WithCaller(service string) Option { return func(o *options) { o.caller = service } }

// WithCodec encodes (Publisher) and decodes (Message.Decode) payloads with
// c instead of DefaultCodec.
func WithCodec(c Codec) Option { return func(o *options) { o.codec = c } }

// WithStore keeps idempotency keys in s instead of a new MemoryStore with
// default settings. Share one store between consumers of the same messages.
// Consumer.
func WithStore(s Store) Option { return func(o *options) { o.store = s } }

// WithKeyFunc derives the idempotency key from a message instead of the
// Nats-Msg-Id header. An empty key falls back to the default. Consumer.
func WithKeyFunc(f func(*Message) string) Option { return func(o *options) { o.keyFunc = f } }

// WithBackoff replaces the consumer's exponential backoff: f returns the
// delay before redelivery after the attempt-th failed delivery (1-based).
// Consumer.
func WithBackoff(f func(attempt int) time.Duration) Option {
	return func(o *options) { o.backoff = f }
}

// expBackoff returns initial * 2^(attempt-1), capped at max.
func expBackoff(initial, max time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := initial
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}
