package tracing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/vitamin-go/vitamin/internal/telemetry"
)

// Exporter names for Config.Exporter.
const (
	// ExporterNone exports nothing. Spans are still created and
	// propagated, so trace IDs reach logs and downstream services.
	ExporterNone = "none"
	// ExporterStdout writes spans and metrics as JSON to standard output.
	ExporterStdout = "stdout"
	// ExporterOTLPGRPC sends OTLP over gRPC (collector port 4317).
	ExporterOTLPGRPC = "otlp-grpc"
	// ExporterOTLPHTTP sends OTLP over HTTP with protobuf (collector port
	// 4318).
	ExporterOTLPHTTP = "otlp-http"
)

// Config describes the telemetry of one service. It is plain data, meant
// to be loaded from a configuration file (its keys are snake_case, in yaml
// and json tags alike: service_name, sample_ratio…); the zero value of
// each field means "take it from the standard OTEL_* environment
// variable, else the documented default". A field set here wins over the
// environment.
type Config struct {
	// ServiceName is the service.name resource attribute. Required, unless
	// OTEL_SERVICE_NAME is set.
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
	// ServiceVersion is the service.version resource attribute. Optional.
	ServiceVersion string `yaml:"service_version,omitempty" json:"service_version,omitempty"`
	// InstanceID is the service.instance.id resource attribute; use the ID
	// the instance registers under in discovery. Default: the value in
	// OTEL_RESOURCE_ATTRIBUTES, else a random UUID.
	InstanceID string `yaml:"instance_id,omitempty" json:"instance_id,omitempty"`
	// Environment is the deployment.environment.name resource attribute
	// (for example "production"). Optional.
	Environment string `yaml:"environment,omitempty" json:"environment,omitempty"`

	// Exporter is one of "otlp-grpc", "otlp-http", "stdout" or "none",
	// for both spans and metrics. Default: from OTEL_TRACES_EXPORTER and
	// OTEL_METRICS_EXPORTER ("otlp", "console", "none"; "otlp" uses
	// OTEL_EXPORTER_OTLP_PROTOCOL, "grpc" or "http/protobuf", default
	// "http/protobuf"); else "otlp" if OTEL_EXPORTER_OTLP_ENDPOINT is set;
	// else "none".
	Exporter string `yaml:"exporter,omitempty" json:"exporter,omitempty"`
	// Endpoint is the collector's base URL for the OTLP exporters, such as
	// "http://otel-collector:4317"; "http" means without TLS. The OTLP/HTTP
	// exporter appends /v1/traces and /v1/metrics. Default: the
	// OTEL_EXPORTER_OTLP_ENDPOINT family of variables, else localhost.
	// Headers, certificates, compression and timeouts come from the
	// OTEL_EXPORTER_OTLP_* variables.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`

	// SampleRatio is the share of new traces that are sampled, from 0 to 1,
	// used in a parent-based sampler: a span whose parent was sampled is
	// sampled, and one whose parent was not is not, whatever the ratio.
	// A B3 decision that came without IDs ("b3: 0", "b3: d") counts as
	// the parent's; B3 IDs that came without one (deferred) leave it to
	// the ratio. Default (nil): OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG (an unsupported sampler or a bad ratio fails
	// New), else 1 (sample everything).
	SampleRatio *float64 `yaml:"sample_ratio,omitempty" json:"sample_ratio,omitempty"`

	// Propagators lists the header formats used to send and receive trace
	// context: "tracecontext", "baggage", "b3" (single header), "b3multi"
	// (X-B3-* headers) or "none". Default: OTEL_PROPAGATORS, else
	// tracecontext and baggage.
	Propagators []string `yaml:"propagators,omitempty" json:"propagators,omitempty"`

	// Disabled turns all telemetry into no-ops, as OTEL_SDK_DISABLED=true
	// does.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// Ratio returns a pointer to r, for Config.SampleRatio.
func Ratio(r float64) *float64 { return &r }

// Option configures what only code can give to New and Setup.
type Option func(*options)

type options struct {
	processors []sdktrace.SpanProcessor
	readers    []sdkmetric.Reader
	logger     *slog.Logger
}

// WithSpanProcessor adds a span processor, in addition to the exporter's
// (for example a tracetest.SpanRecorder in tests, or a batch processor
// around an exporter of your own).
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(o *options) { o.processors = append(o.processors, p) }
}

// WithMetricReader adds a metric reader, in addition to the exporter's
// (for example a sdkmetric.ManualReader in tests, or a Prometheus
// exporter).
func WithMetricReader(r sdkmetric.Reader) Option {
	return func(o *options) { o.readers = append(o.readers, r) }
}

// WithLogger sets the logger for what New decided (exporter, sampler,
// propagators). Nil, the default, is silent.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Telemetry holds the tracer provider, meter provider and propagator of a
// service. Hand it to the transport adapters (tracinggrpc, tracinghttp,
// tracingnats: their Telemetry interface is the one it satisfies) or use
// Setup to make it the global default. It is safe for concurrent use.
type Telemetry struct {
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	prop     propagation.TextMapPropagator
	shutdown []func(context.Context) error
	flush    []func(context.Context) error
}

var _ telemetry.Telemetry = (*Telemetry)(nil)

// TracerProvider returns the tracer provider (a no-op one when disabled).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the meter provider (a no-op one when disabled or
// when nothing reads the metrics).
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator returns the composite propagator chosen by the config.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.prop }

// ForceFlush exports all ended spans and collected metrics now. It blocks
// until they are exported or ctx is done.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	var errs []error
	for _, f := range t.flush {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes what remains and stops the exporters. It blocks until
// done or ctx is done. After Shutdown, spans and metrics are dropped.
// Calling it again does nothing more.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Setup builds the service's telemetry with New and installs it as the
// OpenTelemetry globals (otel.SetTracerProvider, otel.SetMeterProvider and
// otel.SetTextMapPropagator), so that every instrumentation that uses the
// globals, including this module's adapters given no Telemetry, reports to
// it. It returns the function that flushes and stops it: call it on the way
// out, with a context that bounds how long the flush may take. Use New
// instead to keep the globals untouched.
func Setup(ctx context.Context, cfg Config, opts ...Option) (shutdown func(context.Context) error, err error) {
	t, err := New(ctx, cfg, opts...)
	if err != nil {
		return nil, err
	}
	otel.SetTracerProvider(t.tp)
	otel.SetMeterProvider(t.mp)
	otel.SetTextMapPropagator(t.prop)
	return t.Shutdown, nil
}

// New builds the tracer provider, meter provider and propagator that cfg
// describes, without touching the OpenTelemetry globals. Invalid settings
// fail with a *FieldError naming the field. New does not connect to the
// collector: exporters connect lazily and retry, so a collector that is
// down loses spans, never the service.
func New(ctx context.Context, cfg Config, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	field, names := propagatorNames(cfg.Propagators)
	prop, err := newPropagator(field, names)
	if err != nil {
		return nil, err
	}
	if cfg.Disabled || envBool("OTEL_SDK_DISABLED") {
		logDebug(ctx, o.logger, "tracing: disabled")
		return &Telemetry{tp: tracenoop.NewTracerProvider(), mp: metricnoop.NewMeterProvider(), prop: prop}, nil
	}
	if cfg.SampleRatio != nil {
		if r := *cfg.SampleRatio; math.IsNaN(r) || r < 0 || r > 1 {
			return nil, configErr("SampleRatio", r, "must be between 0 and 1", nil)
		}
	}
	if cfg.Endpoint != "" {
		if err := checkEndpoint(cfg.Endpoint); err != nil {
			return nil, err
		}
	}
	sampler, err := newSampler(cfg)
	if err != nil {
		return nil, err
	}
	traceExp, err := exporterKind(cfg, "TRACES")
	if err != nil {
		return nil, err
	}
	metricExp, err := exporterKind(cfg, "METRICS")
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}

	t := &Telemetry{prop: prop}
	ok := false
	defer func() {
		if !ok {
			_ = t.Shutdown(context.WithoutCancel(ctx))
		}
	}()

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	spanExp, err := newSpanExporter(ctx, traceExp, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if spanExp != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(spanExp))
	}
	for _, p := range o.processors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	t.tp = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)
	t.flush = append(t.flush, tp.ForceFlush)

	readers := o.readers
	metricExporter, err := newMetricExporter(ctx, metricExp, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if metricExporter != nil {
		readers = append(readers, sdkmetric.NewPeriodicReader(metricExporter))
	}
	if len(readers) == 0 {
		t.mp = metricnoop.NewMeterProvider()
	} else {
		mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res)}
		for _, r := range readers {
			mpOpts = append(mpOpts, sdkmetric.WithReader(r))
		}
		mp := sdkmetric.NewMeterProvider(mpOpts...)
		t.mp = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
		t.flush = append(t.flush, mp.ForceFlush)
	}
	ok = true
	if o.logger != nil {
		o.logger.LogAttrs(ctx, slog.LevelInfo, "tracing: telemetry ready",
			slog.String("resource", res.String()),
			slog.String("traces_exporter", traceExp),
			slog.String("metrics_exporter", metricExp),
			slog.String("propagators", strings.Join(prop.Fields(), ",")))
	}
	return t, nil
}

// newSampler returns the parent-based ratio sampler of cfg.SampleRatio,
// else the one OTEL_TRACES_SAMPLER names, else one that samples every new
// trace; its parent-based forms honour B3 decisions (see parentBased).
func newSampler(cfg Config) (sdktrace.Sampler, error) {
	if cfg.SampleRatio != nil {
		return parentBased(sdktrace.TraceIDRatioBased(*cfg.SampleRatio)), nil
	}
	s, err := samplerFromEnv()
	if s == nil && err == nil {
		s = parentBased(sdktrace.AlwaysSample())
	}
	return s, err
}

func logDebug(ctx context.Context, l *slog.Logger, msg string) {
	if l != nil && l.Enabled(ctx, slog.LevelDebug) {
		l.DebugContext(ctx, msg)
	}
}

func envBool(key string) bool {
	v, err := strconv.ParseBool(strings.TrimSpace(os.Getenv(key)))
	return err == nil && v
}

func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return configErr("Endpoint", ep, "not a URL", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return configErr("Endpoint", ep, "must be an http:// or https:// URL", nil)
	}
	if u.Host == "" {
		return configErr("Endpoint", ep, "has no host", nil)
	}
	return nil
}

// exporterKind resolves the exporter of one signal ("TRACES" or
// "METRICS") from the config, then from the environment.
func exporterKind(cfg Config, signal string) (string, error) {
	switch cfg.Exporter {
	case ExporterNone, ExporterStdout, ExporterOTLPGRPC, ExporterOTLPHTTP:
		return cfg.Exporter, nil
	case "":
	default:
		return "", configErr("Exporter", cfg.Exporter, fmt.Sprintf("unknown exporter (want %s, %s, %s or %s)",
			ExporterOTLPGRPC, ExporterOTLPHTTP, ExporterStdout, ExporterNone), nil)
	}
	if cfg.Endpoint != "" {
		return "", configErr("Exporter", nil, "must be set when Endpoint is", nil)
	}
	key := "OTEL_" + signal + "_EXPORTER"
	env := strings.ToLower(strings.TrimSpace(os.Getenv(key)))
	if env == "" {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") == "" {
			return ExporterNone, nil
		}
		env = "otlp"
	}
	switch env {
	case "none":
		return ExporterNone, nil
	case "console":
		return ExporterStdout, nil
	case "otlp":
		pkey := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
		proto := strings.TrimSpace(os.Getenv(pkey))
		if proto == "" {
			pkey = "OTEL_EXPORTER_OTLP_PROTOCOL"
			proto = strings.TrimSpace(os.Getenv(pkey))
		}
		switch proto {
		case "grpc":
			return ExporterOTLPGRPC, nil
		case "", "http/protobuf":
			return ExporterOTLPHTTP, nil
		default:
			return "", configErr(pkey, proto, "unsupported protocol (want grpc or http/protobuf)", nil)
		}
	default:
		return "", configErr(key, env, "unsupported exporter (want otlp, console or none)", nil)
	}
}

func newSpanExporter(ctx context.Context, kind, endpoint string) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch kind {
	case ExporterStdout:
		exp, err = stdouttrace.New()
	case ExporterOTLPGRPC:
		var opts []otlptracegrpc.Option
		if u, _ := url.Parse(endpoint); endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(u.Host))
			if u.Scheme == "http" {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	case ExporterOTLPHTTP:
		var opts []otlptracehttp.Option
		if u, _ := url.Parse(endpoint); endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(u.Host),
				otlptracehttp.WithURLPath(strings.TrimSuffix(u.Path, "/")+"/v1/traces"))
			if u.Scheme == "http" {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, configErr("Exporter", kind, "cannot create the span exporter", err)
	}
	return exp, nil
}

func newMetricExporter(ctx context.Context, kind, endpoint string) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch kind {
	case ExporterStdout:
		exp, err = stdoutmetric.New()
	case ExporterOTLPGRPC:
		var opts []otlpmetricgrpc.Option
		if u, _ := url.Parse(endpoint); endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpoint(u.Host))
			if u.Scheme == "http" {
				opts = append(opts, otlpmetricgrpc.WithInsecure())
			}
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	case ExporterOTLPHTTP:
		var opts []otlpmetrichttp.Option
		if u, _ := url.Parse(endpoint); endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpoint(u.Host),
				otlpmetrichttp.WithURLPath(strings.TrimSuffix(u.Path, "/")+"/v1/metrics"))
			if u.Scheme == "http" {
				opts = append(opts, otlpmetrichttp.WithInsecure())
			}
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, configErr("Exporter", kind, "cannot create the metric exporter", err)
	}
	return exp, nil
}

// newResource describes the service: the SDK's own attributes, then
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, then the config, each
// overriding the one before.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, configErr("OTEL_RESOURCE_ATTRIBUTES", nil, "cannot parse", err)
	}
	var attrs = []attribute.KeyValue{}
	if cfg.ServiceName != "" {
		attrs = append(attrs, semconv.ServiceName(cfg.ServiceName))
	} else if _, ok := env.Set().Value(semconv.ServiceNameKey); !ok {
		return nil, configErr("ServiceName", nil, "required (or set OTEL_SERVICE_NAME)", nil)
	}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	if cfg.InstanceID != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(cfg.InstanceID))
	} else if _, ok := env.Set().Value(semconv.ServiceInstanceIDKey); !ok {
		attrs = append(attrs, semconv.ServiceInstanceID(newUUID()))
	}
	if cfg.Environment != "" {
		attrs = append(attrs, semconv.DeploymentEnvironmentNameKey.String(cfg.Environment))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, configErr("OTEL_RESOURCE_ATTRIBUTES", nil, "cannot build the resource", err)
	}
	return res, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
