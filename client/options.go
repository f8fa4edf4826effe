package client

import (
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// MetricEjections counts instances ejected by outlier detection, with the
// attribute "service". It is recorded through the OpenTelemetry API.
const MetricEjections = "vitamin.client.ejections"

// Option configures a client with things only code can give. Options are
// applied once, by NewGRPC, NewHTTP or NewTransport.
type Option func(*options)

type options struct {
	watcher     discovery.Watcher
	watchOpts   []discovery.WatchOption
	policies    *resilience.Registry
	caller      string
	logger      *slog.Logger
	meter       metric.MeterProvider
	balancing   Balancing
	tracing     bool
	grpcTracing []tracinggrpc.Option
	httpTracing []tracinghttp.Option
	dialOpts    []grpc.DialOption
	base        http.RoundTripper
	retryAll    bool
	badOption   error
}

func buildOptions(service string, opts []Option) (options, error) {
	o := options{tracing: true}
	for _, opt := range opts {
		opt(&o)
	}
	if o.badOption != nil {
		return o, o.badOption
	}
	if service == "" {
		return o, configError("service", "must not be empty")
	}
	if o.watcher == nil {
		return o, configError("WithWatcher", "a discovery.Watcher is required")
	}
	b, err := o.balancing.withDefaults()
	if err != nil {
		return o, err
	}
	o.balancing = b
	if o.meter == nil {
		o.meter = otel.GetMeterProvider()
	}
	return o, nil
}

// WithWatcher sets where the client finds the service's instances: a
// discovery/consul Watcher, or a vitamintest.Registry in tests and
// single-process systems. It is required. opts narrow the watch (by tags,
// metadata or a filter).
func WithWatcher(w discovery.Watcher, opts ...discovery.WatchOption) Option {
	return func(o *options) {
		if w == nil {
			o.badOption = configError("WithWatcher", "the watcher is nil")
		}
		o.watcher, o.watchOpts = w, opts
	}
}

// WithPolicies applies the registry's named policy for the service (and,
// for gRPC, for each method: "orders/pkg.Orders/Get") to every call:
// timeouts, retries and hedges — which go to another instance than the
// attempts before them — circuit breaker, bulkhead and rate limit. Without
// it calls are attempted once.
func WithPolicies(r *resilience.Registry) Option {
	return func(o *options) { o.policies = r }
}

// WithCaller names the calling service, so that servers can apply
// per-caller limits and tell who calls them. HTTP requests carry it in the
// header resilience.CallerHeader. A gRPC connection carries it in its user
// agent (resilience.CallerUserAgent), which gRPC sends with every call at
// no cost per call; servers read it with resiliencegrpc.Caller, where a
// call's own resilience.CallerMetadataKey metadata takes precedence. The
// name must satisfy resilience.ValidateCaller.
func WithCaller(name string) Option {
	return func(o *options) {
		if err := resilience.ValidateCaller(name); err != nil {
			o.badOption = configError("WithCaller", "%v", err)
		}
		o.caller = name
	}
}

// WithBalancing configures the balancer: algorithm, outlier ejection,
// canary, pinning, sticky subsets and zone. Invalid settings make the
// constructor fail with a *ConfigError naming the field.
func WithBalancing(b Balancing) Option {
	return func(o *options) { o.balancing = b }
}

// WithLogger logs instance set changes (Info), ejections (Warn) and
// discovery errors (Warn) to l. Nil, the default, is silent.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMeterProvider records the client's metrics (MetricEjections) through
// mp instead of the global OpenTelemetry meter provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithoutTracing leaves out the OpenTelemetry stats handler (gRPC) or
// transport (HTTP). By default calls are traced through the OpenTelemetry
// globals that tracing.Setup installs.
func WithoutTracing() Option {
	return func(o *options) { o.tracing = false }
}

// WithGRPCTracing passes options to tracinggrpc.ClientHandler, such as
// tracinggrpc.WithTelemetry.
func WithGRPCTracing(opts ...tracinggrpc.Option) Option {
	return func(o *options) { o.grpcTracing = append(o.grpcTracing, opts...) }
}

// WithHTTPTracing passes options to tracinghttp.Transport, such as
// tracinghttp.WithTelemetry.
func WithHTTPTracing(opts ...tracinghttp.Option) Option {
	return func(o *options) { o.httpTracing = append(o.httpTracing, opts...) }
}

// WithDialOptions adds gRPC dial options, applied after the client's own:
// transport credentials (the default is insecure, for plaintext traffic
// inside a trusted network), keepalive settings, interceptors (those given
// with grpc.WithChainUnaryInterceptor run inside the client's, once per
// attempt; one given with grpc.WithUnaryInterceptor runs outside, once per
// call)… Options that replace the resolver or the default service config
// break the client; with WithCaller, the caller's user agent replaces one
// given with grpc.WithUserAgent.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithBaseTransport sets the HTTP transport requests go out on once an
// instance is chosen. Default: a clone of http.DefaultTransport.
func WithBaseTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.base = rt }
}

// WithRetryNonIdempotent lets the HTTP client retry and hedge requests
// whose method is not idempotent (POST, PATCH, CONNECT) too. By default
// only GET, HEAD, OPTIONS, TRACE, PUT and DELETE requests, and requests with
// an Idempotency-Key header, are retried; the others are attempted once,
// still under the policy's breaker, limits and timeout.
func WithRetryNonIdempotent() Option {
	return func(o *options) { o.retryAll = true }
}
