package tracinghttp

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/internal/healthcheck"
	"github.com/vitamin-go/vitamin/internal/telemetry"
)

// Option configures the handler and the transport.
type Option func(*config)

type config struct {
	otel        []otelhttp.Option
	healthPaths []string
	filter      otelhttp.Filter
}

// DefaultHealthPaths are the request paths that are neither traced nor
// measured unless WithHealthPaths says otherwise. They are the same paths
// resilience.Middleware exempts from its limits (resilience.DefaultHealthPaths).
func DefaultHealthPaths() []string { return healthcheck.Paths() }

// Telemetry gives the OpenTelemetry providers the handler and transport
// report to. *tracing.Telemetry satisfies it, and tracinghttp, tracinggrpc
// and tracingnats take the same type. Taking an interface keeps this
// package free of the OpenTelemetry SDK and exporters that package tracing
// brings in.
type Telemetry = telemetry.Telemetry

// WithTelemetry takes the tracer provider, meter provider and propagator
// from t, usually the *tracing.Telemetry that tracing.New returned.
// Without it (or the single-purpose options), the handler and transport
// use the OpenTelemetry globals, as installed by tracing.Setup.
func WithTelemetry(t Telemetry) Option {
	return func(c *config) {
		c.otel = append(c.otel,
			otelhttp.WithTracerProvider(t.TracerProvider()),
			otelhttp.WithMeterProvider(t.MeterProvider()),
			otelhttp.WithPropagators(t.Propagator()))
	}
}

// WithTracerProvider sets the tracer provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.otel = append(c.otel, otelhttp.WithTracerProvider(tp)) }
}

// WithMeterProvider sets the meter provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.otel = append(c.otel, otelhttp.WithMeterProvider(mp)) }
}

// WithPropagator sets the propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.otel = append(c.otel, otelhttp.WithPropagators(p)) }
}

// WithHealthPaths replaces DefaultHealthPaths: requests whose URL path is
// exactly one of paths are neither traced nor measured. No paths traces
// everything.
func WithHealthPaths(paths ...string) Option {
	return func(c *config) { c.healthPaths = append([]string{}, paths...) }
}

// WithFilter traces (and measures) only the requests for which f returns
// true, in addition to leaving out health checks.
func WithFilter(f otelhttp.Filter) Option {
	return func(c *config) { c.filter = f }
}

// WithOtelhttpOptions passes further options to otelhttp as they are,
// such as otelhttp.WithSpanNameFormatter.
func WithOtelhttpOptions(opts ...otelhttp.Option) Option {
	return func(c *config) { c.otel = append(c.otel, opts...) }
}

func newConfig(opts []Option) []otelhttp.Option {
	c := config{healthPaths: DefaultHealthPaths()}
	for _, o := range opts {
		o(&c)
	}
	health := make(map[string]struct{}, len(c.healthPaths))
	for _, p := range c.healthPaths {
		health[p] = struct{}{}
	}
	user := c.filter
	filter := func(r *http.Request) bool {
		if _, ok := health[r.URL.Path]; ok {
			return false
		}
		return user == nil || user(r)
	}
	return append(c.otel, otelhttp.WithFilter(filter))
}

// Handler wraps h so that each request is served inside a server span,
// the child of the caller's span read from the request headers, and its
// duration is recorded. operation names the span when the request matched
// no ServeMux pattern. Health-check paths are neither traced nor
// measured. The handler is safe for concurrent use if h is.
func Handler(h http.Handler, operation string, opts ...Option) http.Handler {
	return otelhttp.NewHandler(h, operation, newConfig(opts)...)
}

// Middleware returns Handler as a middleware.
func Middleware(operation string, opts ...Option) func(http.Handler) http.Handler {
	return otelhttp.NewMiddleware(operation, newConfig(opts)...)
}

// Transport wraps base (http.DefaultTransport when nil) so that each
// request is sent inside a client span, with the trace context and
// baggage of the request's context in its headers. Requests to
// health-check paths are neither traced nor measured. The transport is
// safe for concurrent use if base is.
func Transport(base http.RoundTripper, opts ...Option) http.RoundTripper {
	return otelhttp.NewTransport(base, newConfig(opts)...)
}
