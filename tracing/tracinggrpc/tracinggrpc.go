package tracinggrpc

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/vitamin-go/vitamin/internal/telemetry"
)

// Option configures the handlers.
type Option func(*config)

type config struct {
	otel   []otelgrpc.Option
	filter otelgrpc.Filter
}

// Telemetry gives the OpenTelemetry providers the handlers report to.
// *tracing.Telemetry satisfies it, and tracinggrpc, tracinghttp and
// tracingnats take the same type. Taking an interface keeps this package
// free of the OpenTelemetry SDK and exporters that package tracing brings
// in.
type Telemetry = telemetry.Telemetry

// WithTelemetry takes the tracer provider, meter provider and propagator
// from t, usually the *tracing.Telemetry that tracing.New returned.
// Without it (or the single-purpose options), the handlers use
// the OpenTelemetry globals, as installed by tracing.Setup.
func WithTelemetry(t Telemetry) Option {
	return func(c *config) {
		c.otel = append(c.otel,
			otelgrpc.WithTracerProvider(t.TracerProvider()),
			otelgrpc.WithMeterProvider(t.MeterProvider()),
			otelgrpc.WithPropagators(t.Propagator()))
	}
}

// WithTracerProvider sets the tracer provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.otel = append(c.otel, otelgrpc.WithTracerProvider(tp)) }
}

// WithMeterProvider sets the meter provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.otel = append(c.otel, otelgrpc.WithMeterProvider(mp)) }
}

// WithPropagator sets the propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.otel = append(c.otel, otelgrpc.WithPropagators(p)) }
}

// WithFilter traces (and measures) only the calls for which f returns
// true, in addition to leaving out health checks. The filters package of
// otelgrpc has ready-made ones.
func WithFilter(f otelgrpc.Filter) Option {
	return func(c *config) { c.filter = f }
}

// WithOtelgrpcOptions passes further options to otelgrpc as they are, such
// as otelgrpc.WithMessageEvents or otelgrpc.WithSpanAttributes.
func WithOtelgrpcOptions(opts ...otelgrpc.Option) Option {
	return func(c *config) { c.otel = append(c.otel, opts...) }
}

func newConfig(opts []Option) []otelgrpc.Option {
	var c config
	for _, o := range opts {
		o(&c)
	}
	f := filters.Not(filters.HealthCheck())
	if c.filter != nil {
		f = filters.All(f, c.filter)
	}
	return append(c.otel, otelgrpc.WithFilter(f))
}

// ClientHandler returns a stats handler that starts a client span for each
// call, records the client call duration, and sends the trace context and
// baggage in the call's metadata. Calls to grpc.health.v1.Health are
// neither traced nor measured. The handler is safe for concurrent use.
func ClientHandler(opts ...Option) stats.Handler {
	return otelgrpc.NewClientHandler(newConfig(opts)...)
}

// ServerHandler returns a stats handler that reads the trace context and
// baggage from each call's metadata, starts a server span as the child of
// the caller's span, and records the server call duration. Health checks
// (grpc.health.v1.Health) are neither traced nor measured. The handler is
// safe for concurrent use.
func ServerHandler(opts ...Option) stats.Handler {
	return otelgrpc.NewServerHandler(newConfig(opts)...)
}

// DialOption returns grpc.WithStatsHandler(ClientHandler(opts...)), for
// grpc.NewClient.
func DialOption(opts ...Option) grpc.DialOption {
	return grpc.WithStatsHandler(ClientHandler(opts...))
}

// ServerOption returns grpc.StatsHandler(ServerHandler(opts...)), for
// grpc.NewServer.
func ServerOption(opts ...Option) grpc.ServerOption {
	return grpc.StatsHandler(ServerHandler(opts...))
}
