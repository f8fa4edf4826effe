package messaging

import (
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// PublisherOption configures a Publisher with what only code can give.
// An option that applies only to consumers is not a PublisherOption, so
// passing it to NewPublisher does not compile. Options are applied once,
// at construction.
type PublisherOption interface{ applyPublisher(*publisherOptions) }

// ConsumerOption configures a Consumer with what only code can give. An
// option that applies only to publishers, such as WithCaller, is not a
// ConsumerOption, so passing it to NewConsumer does not compile. Options
// are applied once, at construction.
type ConsumerOption interface{ applyConsumer(*consumerOptions) }

// Option is an option for both a Publisher and a Consumer: it is a
// PublisherOption and a ConsumerOption.
type Option interface {
	PublisherOption
	ConsumerOption
}

// options are the settings a Publisher and a Consumer share.
type options struct {
	logger    *slog.Logger
	meter     metric.MeterProvider
	codec     Codec
	noTracing bool
	tracing   []tracingnats.Option
}

type publisherOptions struct {
	options
	caller string
}

type consumerOptions struct {
	options
	store     Store
	keyFunc   func(*Message) string
	beforeAck func(*Message) bool // tests: runs after the mark; false skips the ack
}

// option is an Option: it sets what both share.
type option func(*options)

func (f option) applyPublisher(o *publisherOptions) { f(&o.options) }
func (f option) applyConsumer(o *consumerOptions)   { f(&o.options) }

type publisherOption func(*publisherOptions)

func (f publisherOption) applyPublisher(o *publisherOptions) { f(o) }

type consumerOption func(*consumerOptions)

func (f consumerOption) applyConsumer(o *consumerOptions) { f(o) }

// finish fills in the defaults that depend on the OpenTelemetry globals,
// checks what an option may have got wrong and builds the tracer; tr is
// nil with WithoutTracing.
func (o *options) finish() (tr *tracingnats.Tracer, err error) {
	if o.codec == nil {
		return nil, invalid("WithCodec", nil, "codec is nil")
	}
	if o.meter == nil {
		o.meter = otel.GetMeterProvider()
	}
	if o.noTracing {
		return nil, nil
	}
	return tracingnats.New(o.tracing...), nil
}

// build sets o to the defaults, applies opts with apply (skipping nil
// ones) and finishes shared, the part of o both kinds of options set.
func build[O any, Opt comparable](o *O, shared *options, opts []Opt, apply func(Opt, *O)) (*tracingnats.Tracer, error) {
	*shared = options{codec: DefaultCodec{}}
	var none Opt
	for _, opt := range opts {
		if opt != none {
			apply(opt, o)
		}
	}
	return shared.finish()
}

// WithLogger logs through l; nil (the default) is silent.
func WithLogger(l *slog.Logger) Option { return option(func(o *options) { o.logger = l }) }

// WithMeterProvider records metrics through p instead of
// otel.GetMeterProvider().
func WithMeterProvider(p metric.MeterProvider) Option {
	return option(func(o *options) { o.meter = p })
}

// WithTracing passes options to the tracingnats.Tracer that starts the
// producer and consumer spans and writes and reads the trace headers, such
// as tracingnats.WithTelemetry. By default the Tracer uses the
// OpenTelemetry globals at construction. It may be given more than once;
// the options add up.
func WithTracing(opts ...tracingnats.Option) Option {
	return option(func(o *options) { o.tracing = append(o.tracing, opts...) })
}

// WithoutTracing leaves out spans and trace headers: a Publisher writes no
// trace context into its messages and a Consumer starts no span and reads
// none, so handlers do not continue the publisher's trace.
func WithoutTracing() Option { return option(func(o *options) { o.noTracing = true }) }

// WithCodec encodes (Publisher) and decodes (Message.Decode) payloads with
// c instead of DefaultCodec.
func WithCodec(c Codec) Option { return option(func(o *options) { o.codec = c }) }

// WithCaller names the publishing service; it is sent in the
// Vitamin-Caller header.
func WithCaller(service string) PublisherOption {
	return publisherOption(func(o *publisherOptions) { o.caller = service })
}

// WithStore keeps idempotency keys in s instead of a new MemoryStore with
// default settings. Share one store between consumers of the same messages.
func WithStore(s Store) ConsumerOption {
	return consumerOption(func(o *consumerOptions) { o.store = s })
}

// WithKeyFunc derives the idempotency key from a message instead of the
// Nats-Msg-Id header. An empty key falls back to the default.
func WithKeyFunc(f func(*Message) string) ConsumerOption {
	return consumerOption(func(o *consumerOptions) { o.keyFunc = f })
}
