package tracing_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vitamin-go/vitamin/tracing"
)

// clearOTelEnv makes sure the machine's environment does not change what a
// test checks.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_PROPAGATORS", "OTEL_SDK_DISABLED",
	} {
		t.Setenv(k, "")
	}
}

func newTelemetry(t *testing.T, cfg tracing.Config, opts ...tracing.Option) (*tracing.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := tracing.New(t.Context(), cfg, append(opts, tracing.WithSpanProcessor(rec))...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, rec
}

func TestNewRejectsInvalidConfigNamingTheField(t *testing.T) {
	tests := []struct {
		name  string
		cfg   tracing.Config
		env   map[string]string
		field string
	}{
		{"no service name", tracing.Config{}, nil, "ServiceName"},
		{"unknown exporter", tracing.Config{ServiceName: "s", Exporter: "zipkin"}, nil, "Exporter"},
		{"ratio above one", tracing.Config{ServiceName: "s", SampleRatio: tracing.Ratio(1.5)}, nil, "SampleRatio"},
		{"negative ratio", tracing.Config{ServiceName: "s", SampleRatio: tracing.Ratio(-0.1)}, nil, "SampleRatio"},
		{"unknown propagator", tracing.Config{ServiceName: "s", Propagators: []string{"tracecontext", "jaeger"}}, nil, "Propagators"},
		{"endpoint not a URL", tracing.Config{ServiceName: "s", Exporter: tracing.ExporterOTLPGRPC, Endpoint: "collector:4317"}, nil, "Endpoint"},
		{"endpoint without exporter", tracing.Config{ServiceName: "s", Endpoint: "http://collector:4317"}, nil, "Exporter"},
		{"unknown exporter in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"unknown protocol in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"unknown propagator in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_PROPAGATORS": "xray"}, "OTEL_PROPAGATORS"},
		{"unsupported sampler in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"},
		{"bad sampler ratio in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"sampler ratio above one in env", tracing.Config{ServiceName: "s"}, map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := tracing.New(t.Context(), tt.cfg)
			if !errors.Is(err, tracing.ErrInvalidConfig) {
				t.Fatalf("New: err = %v, want ErrInvalidConfig", err)
			}
			var fe *tracing.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("New: err = %v, want a FieldError for field %s", err, tt.field)
			}
		})
	}
}

func TestSpansCarryTheServiceResource(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,service.version=0.0.1")
	tel, rec := newTelemetry(t, tracing.Config{ServiceName: "orders", ServiceVersion: "1.2.3", InstanceID: "orders-1", Environment: "test"})
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	span.End()

	got := map[string]string{}
	for _, kv := range rec.Ended()[0].Resource().Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"service.name":                "orders", // the config wins over OTEL_SERVICE_NAME
		"service.version":             "1.2.3",  // and over OTEL_RESOURCE_ATTRIBUTES
		"service.instance.id":         "orders-1",
		"deployment.environment.name": "test",
		"team":                        "payments", // the environment adds what the config does not say
		"telemetry.sdk.language":      "go",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

func TestServiceNameAndInstanceIDDefaults(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SERVICE_NAME", "billing")
	ids := map[string]bool{}
	for range 2 {
		tel, rec := newTelemetry(t, tracing.Config{})
		_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
		span.End()
		set := rec.Ended()[0].Resource().Set()
		if v, _ := set.Value("service.name"); v.AsString() != "billing" {
			t.Errorf("service.name = %q, want OTEL_SERVICE_NAME's billing", v.AsString())
		}
		v, _ := set.Value("service.instance.id")
		if len(v.AsString()) != 36 {
			t.Errorf("service.instance.id = %q, want a generated UUID", v.AsString())
		}
		ids[v.AsString()] = true
	}
	if len(ids) != 2 {
		t.Errorf("two instances got the same generated instance ID: %v", ids)
	}
}

func TestSamplerIsParentBasedRatio(t *testing.T) {
	clearOTelEnv(t)
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}, Remote: true,
	}))
	tests := []struct {
		name   string
		ratio  *float64
		env    string
		parent context.Context
		want   bool
	}{
		{"ratio 0, new trace", tracing.Ratio(0), "", context.Background(), false},
		{"ratio 0, sampled parent", tracing.Ratio(0), "", sampledParent, true},
		{"ratio 1, new trace", tracing.Ratio(1), "", context.Background(), true},
		{"ratio 1, unsampled parent", tracing.Ratio(1), "", unsampledParent, false},
		{"default samples everything", nil, "", context.Background(), true},
		{"OTEL_TRACES_SAMPLER when the config says nothing", nil, "always_off", context.Background(), false},
		{"OTEL_TRACES_SAMPLER parent-based, sampled parent", nil, "parentbased_always_off", sampledParent, true},
		{"OTEL_TRACES_SAMPLER parent-based, unsampled parent", nil, "parentbased_always_on", unsampledParent, false},
		{"OTEL_TRACES_SAMPLER always_on ignores the parent", nil, "always_on", unsampledParent, true},
		{"the config wins over OTEL_TRACES_SAMPLER", tracing.Ratio(1), "always_off", context.Background(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_SAMPLER", tt.env)
			tel, rec := newTelemetry(t, tracing.Config{ServiceName: "s", SampleRatio: tt.ratio})
			_, span := tel.TracerProvider().Tracer("test").Start(tt.parent, "work")
			span.End()
			if got := len(rec.Ended()) == 1; got != tt.want {
				t.Errorf("span recorded = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDisabledRecordsNothingButKeepsPropagating(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	tel, rec := newTelemetry(t, tracing.Config{ServiceName: "s", Exporter: tracing.ExporterOTLPGRPC, Endpoint: "http://127.0.0.1:1"})
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	span.End()
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded with OTEL_SDK_DISABLED=true, want 0", n)
	}
	if !slices.Contains(tel.Propagator().Fields(), "traceparent") {
		t.Errorf("propagator fields = %v, want traceparent", tel.Propagator().Fields())
	}
}

func TestPropagatorsFromConfigAndEnvironment(t *testing.T) {
	tests := []struct {
		cfg  []string
		env  string
		want []string
	}{
		{nil, "", []string{"traceparent", "tracestate", "baggage"}},
		{nil, "b3multi", []string{"x-b3-traceid", "x-b3-spanid", "x-b3-sampled", "x-b3-flags"}},
		{[]string{"b3"}, "tracecontext", []string{"b3"}},
		{[]string{"tracecontext", "b3", "b3multi"}, "", []string{"traceparent", "tracestate", "b3", "x-b3-traceid"}},
		{[]string{"none"}, "", nil},
	}
	for _, tt := range tests {
		t.Run("env="+tt.env+",config="+strings.Join(tt.cfg, "+"), func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_PROPAGATORS", tt.env)
			tel, _ := newTelemetry(t, tracing.Config{ServiceName: "s", Propagators: tt.cfg})
			fields := tel.Propagator().Fields()
			for _, f := range tt.want {
				if !slices.Contains(fields, f) {
					t.Errorf("fields = %v, want %s among them", fields, f)
				}
			}
			if len(tt.want) == 0 && len(fields) != 0 {
				t.Errorf("fields = %v, want none", fields)
			}
		})
	}
}

// otlpHTTPCollector is a minimal OTLP/HTTP receiver on loopback that
// counts the spans it receives, by service name.
type otlpHTTPCollector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans map[string]int
	paths map[string]int
}

func startOTLPHTTP(t *testing.T) *otlpHTTPCollector {
	c := &otlpHTTPCollector{spans: map[string]int{}, paths: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.paths[r.URL.Path]++
		if r.URL.Path == "/v1/traces" {
			var req collectortrace.ExportTraceServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			countSpans(c.spans, &req)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func countSpans(into map[string]int, req *collectortrace.ExportTraceServiceRequest) {
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			into[svc] += len(ss.GetSpans())
		}
	}
}

func (c *otlpHTTPCollector) count(svc string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spans[svc]
}

func (c *otlpHTTPCollector) hits(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[path]
}

func TestShutdownFlushesToOTLPHTTPCollector(t *testing.T) {
	clearOTelEnv(t)
	col := startOTLPHTTP(t)
	tel, err := tracing.New(t.Context(), tracing.Config{ServiceName: "orders", Exporter: tracing.ExporterOTLPHTTP, Endpoint: col.srv.URL},
		tracing.WithMetricReader(sdkmetric.NewManualReader()))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
		span.End()
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := col.count("orders"); n != 3 {
		t.Errorf("collector received %d spans after Shutdown, want 3", n)
	}
}

func TestOTLPEndpointFromEnvironmentChoosesTheExporter(t *testing.T) {
	clearOTelEnv(t)
	col := startOTLPHTTP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.srv.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
	tel, err := tracing.New(t.Context(), tracing.Config{ServiceName: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "work")
	span.End()
	counter, _ := tel.MeterProvider().Meter("test").Int64Counter("orders.placed")
	counter.Add(t.Context(), 1)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := col.count("orders"); n != 1 {
		t.Errorf("collector received %d spans, want 1", n)
	}
	if n := col.hits("/v1/metrics"); n == 0 {
		t.Errorf("collector received no metrics on shutdown")
	}
}

// traceCollector is a minimal OTLP/gRPC trace receiver.
type traceCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]int
}

func (c *traceCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	countSpans(c.spans, req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// metricsCollector accepts OTLP/gRPC metrics and counts the requests.
type metricsCollector struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu       sync.Mutex
	requests int
}

func (c *metricsCollector) Export(context.Context, *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

func TestOTLPGRPCExporterDeliversSpans(t *testing.T) {
	clearOTelEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &traceCollector{spans: map[string]int{}}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, col)
	mcol := &metricsCollector{}
	collectormetrics.RegisterMetricsServiceServer(srv, mcol)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	tel, err := tracing.New(t.Context(), tracing.Config{
		ServiceName: "payments", Exporter: tracing.ExporterOTLPGRPC, Endpoint: "http://" + lis.Addr().String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "charge")
	span.End()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tel.ForceFlush(ctx); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	col.mu.Lock()
	n := col.spans["payments"]
	col.mu.Unlock()
	if n != 1 {
		t.Errorf("collector received %d spans, want 1", n)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	mcol.mu.Lock()
	defer mcol.mu.Unlock()
	if mcol.requests == 0 {
		t.Errorf("collector received no metrics")
	}
}

func TestMetricsReachTheReader(t *testing.T) {
	clearOTelEnv(t)
	reader := sdkmetric.NewManualReader()
	tel, _ := newTelemetry(t, tracing.Config{ServiceName: "s"}, tracing.WithMetricReader(reader))
	c, _ := tel.MeterProvider().Meter("test").Int64Counter("jobs")
	c.Add(t.Context(), 2)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 || rm.ScopeMetrics[0].Metrics[0].Name != "jobs" {
		t.Errorf("collected %+v, want the jobs counter", rm.ScopeMetrics)
	}
}

func TestSetupInstallsTheGlobals(t *testing.T) {
	clearOTelEnv(t)
	rec := tracetest.NewSpanRecorder()
	shutdown, err := tracing.Setup(t.Context(), tracing.Config{ServiceName: "s", Propagators: []string{"b3"}}, tracing.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		if err := shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	_, span := otel.Tracer("test").Start(t.Context(), "global")
	span.End()
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("%d spans recorded through the global tracer provider, want 1", n)
	}
	if f := otel.GetTextMapPropagator().Fields(); !slices.Equal(f, []string{"b3"}) {
		t.Errorf("global propagator fields = %v, want [b3]", f)
	}
}
