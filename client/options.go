package client

import (
	"errors"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/internal/fielderr"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// MetricEjections counts instances ejected by outlier detection, with the
// attribute "service". It is recorded through the OpenTelemetry API.
const MetricEjections = "vitamin.client.ejections"

// MetricRedispatches counts attempts sent to another instance outside the
// retry policy's own decisions, with the attributes "service" and "reason":
// "not_sent" for an HTTP attempt that provably reached no server (a failed
// dial), sent again transparently; "stalled" for an attempt ended early
// because its instance went quiet while the others answered, which the
// policy then retries (see the package documentation).
const MetricRedispatches = "vitamin.client.redispatches"

// GRPCOption configures a client made by NewGRPC with things only code can
// give. An option that applies only to HTTP clients is not a GRPCOption, so
// passing it to NewGRPC does not compile. Options are applied once, at
// construction.
type GRPCOption interface{ applyGRPC(*grpcOptions) }

// HTTPOption configures a client made by NewHTTP or NewTransport with
// things only code can give. An option that applies only to gRPC clients
// is not an HTTPOption, so passing it to NewHTTP does not compile. Options
// are applied once, at construction.
type HTTPOption interface{ applyHTTP(*httpOptions) }

// Option is an option for both kinds of client: it is a GRPCOption and an
// HTTPOption.
type Option interface {
	GRPCOption
	HTTPOption
}

// options are the settings both kinds of client take.
type options struct {
	watcher   discovery.Watcher
	watchOpts []discovery.WatchOption
	policies  *resilience.Registry
	caller    string
	logger    *slog.Logger
	meter     metric.MeterProvider
	tracing   bool
	balancing Balancing // Config.Balancing with its defaults
	routing   *Routing  // WithRouting
	monitor   *Monitor  // WithMonitor

	guardHandler func(GuardEvent) // WithGuardHandler
	err          error            // the first invalid option
}

type grpcOptions struct {
	options
	tracingOpts []tracinggrpc.Option
	dialOpts    []grpc.DialOption
}

type httpOptions struct {
	options
	tracingOpts []tracinghttp.Option
	base        http.RoundTripper
	retryAll    bool
}

// option is an Option: it sets what both kinds of client share.
type option func(*options)

func (f option) applyGRPC(o *grpcOptions) { f(&o.options) }
func (f option) applyHTTP(o *httpOptions) { f(&o.options) }

type grpcOption func(*grpcOptions)

func (f grpcOption) applyGRPC(o *grpcOptions) { f(o) }

type httpOption func(*httpOptions)

func (f httpOption) applyHTTP(o *httpOptions) { f(o) }

// newOptions returns the options shared by both kinds of client, with
// their defaults.
func newOptions() options { return options{tracing: true} }

// validate checks the service, cfg and the shared options, and fills in
// the defaults.
func (o *options) validate(service string, cfg Config) error {
	if o.err != nil {
		return o.err
	}
	if service == "" {
		return invalid("service", nil, "must not be empty")
	}
	if o.watcher == nil {
		return invalid("WithWatcher", nil, "a discovery.Watcher is required")
	}
	b, err := cfg.Balancing.withDefaults()
	if err != nil {
		return err
	}
	o.balancing = b
	if o.routing != nil {
		o.balancing = o.routing.Balancing()
	}
	if o.meter == nil {
		o.meter = otel.GetMeterProvider()
	}
	return nil
}

func buildGRPCOptions(service string, cfg Config, opts []GRPCOption) (grpcOptions, error) {
	o := grpcOptions{options: newOptions()}
	for _, opt := range opts {
		opt.applyGRPC(&o)
	}
	return o, o.validate(service, cfg)
}

func buildHTTPOptions(service string, cfg Config, opts []HTTPOption) (httpOptions, error) {
	o := httpOptions{options: newOptions()}
	for _, opt := range opts {
		opt.applyHTTP(&o)
	}
	return o, o.validate(service, cfg)
}

// fail records the first invalid option.
func (o *options) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// WithWatcher sets where the client finds the service's instances: a
// discovery/consul Watcher, or a vitamintest.Registry in tests and
// single-process systems. It is required. opts narrow the watch (by tags,
// metadata or a filter).
func WithWatcher(w discovery.Watcher, opts ...discovery.WatchOption) Option {
	return option(func(o *options) {
		if w == nil {
			o.fail(invalid("WithWatcher", nil, "the watcher is nil"))
		}
		o.watcher, o.watchOpts = w, opts
	})
}

// WithPolicies applies the registry's named policy for the service (and,
// for gRPC, for each method: "orders/pkg.Orders/Get") to every call:
// timeouts, retries and hedges — which go to another instance than the
// attempts before them — circuit breaker, bulkhead and rate limit. Without
// it calls are attempted once.
func WithPolicies(r *resilience.Registry) Option {
	return option(func(o *options) { o.policies = r })
}

// WithCaller names the calling service, so that servers can apply
// per-caller limits and tell who calls them. HTTP requests carry it in the
// header resilience.CallerHeader. A gRPC connection carries it in its user
// agent (resilience.CallerUserAgent), which gRPC sends with every call at
// no cost per call; servers read it with resiliencegrpc.Caller, where a
// call's own resilience.CallerMetadataKey metadata takes precedence. The
// name must satisfy resilience.ValidateCaller.
//
// It is an option rather than a Config field because it is not a setting
// of one client: it is the calling service's own name, configured once for
// the process and given by code to every client and publisher it builds.
func WithCaller(name string) Option {
	return option(func(o *options) {
		var fe *FieldError
		if err := resilience.ValidateCaller(name); errors.As(err, &fe) {
			o.fail(fielderr.New(ErrInvalidConfig, "WithCaller", name, fe.Reason, nil))
		}
		o.caller = name
	})
}

// WithRouting makes the client balance as r says, now and after each of
// r's updates, instead of as Config.Balancing says (which is then
// ignored). Nil: Config.Balancing, fixed.
func WithRouting(r *Routing) Option {
	return option(func(o *options) { o.routing = r })
}

// WithLogger logs instance set changes (Info), ejections (Warn) and
// discovery errors (Warn) to l. Nil, the default, is silent.
func WithLogger(l *slog.Logger) Option {
	return option(func(o *options) { o.logger = l })
}

// WithMeterProvider records the client's metrics (MetricEjections,
// MetricRedispatches) through mp instead of the global OpenTelemetry meter
// provider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return option(func(o *options) { o.meter = mp })
}

// WithoutTracing leaves out the OpenTelemetry stats handler (gRPC) or
// transport (HTTP). By default calls are traced through the OpenTelemetry
// globals that tracing.Setup installs.
func WithoutTracing() Option {
	return option(func(o *options) { o.tracing = false })
}

// WithGRPCTracing passes options to tracinggrpc.ClientHandler, such as
// tracinggrpc.WithTelemetry.
func WithGRPCTracing(opts ...tracinggrpc.Option) GRPCOption {
	return grpcOption(func(o *grpcOptions) { o.tracingOpts = append(o.tracingOpts, opts...) })
}

// WithDialOptions adds gRPC dial options, applied after the client's own:
// transport credentials (the default is insecure, for plaintext traffic
// inside a trusted network), keepalive settings, interceptors (those given
// with grpc.WithChainUnaryInterceptor run inside the client's, once per
// attempt; one given with grpc.WithUnaryInterceptor runs outside, once per
// call)… Options that replace the resolver or the default service config
// break the client; with WithCaller, the caller's user agent replaces one
// given with grpc.WithUserAgent.
func WithDialOptions(opts ...grpc.DialOption) GRPCOption {
	return grpcOption(func(o *grpcOptions) { o.dialOpts = append(o.dialOpts, opts...) })
}

// WithHTTPTracing passes options to tracinghttp.Transport, such as
// tracinghttp.WithTelemetry.
func WithHTTPTracing(opts ...tracinghttp.Option) HTTPOption {
	return httpOption(func(o *httpOptions) { o.tracingOpts = append(o.tracingOpts, opts...) })
}

// WithBaseTransport sets the HTTP transport requests go out on once an
// instance is chosen. Default: a clone of http.DefaultTransport.
func WithBaseTransport(rt http.RoundTripper) HTTPOption {
	return httpOption(func(o *httpOptions) { o.base = rt })
}

// WithRetryNonIdempotent lets the HTTP client retry and hedge requests
// whose method is not idempotent (POST, PATCH, CONNECT) too. By default
// only GET, HEAD, OPTIONS, TRACE, PUT and DELETE requests, and requests with
// an Idempotency-Key header, are retried; the others are attempted once,
// still under the policy's breaker, limits and timeout.
//
// It is an option rather than a Config field: whether sending a request
// twice is harmless is a property of the API the code calls, known to the
// code's author, not a setting to change in a file.
func WithRetryNonIdempotent() HTTPOption {
	return httpOption(func(o *httpOptions) { o.retryAll = true })
}
