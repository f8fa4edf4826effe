package tracinghttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRequestsAreTracedAndHealthChecksAreNot(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, err := tracing.New(t.Context(), tracing.Config{ServiceName: "frontend"}, tracing.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()

	seen := make(chan trace.SpanContext, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		seen <- trace.SpanContextFromContext(r.Context())
	})
	opts := []tracinghttp.Option{tracinghttp.WithTelemetry(tel), tracinghttp.WithHealthPaths("/healthz", "/status")}
	srv := httptest.NewServer(tracinghttp.Handler(mux, "frontend", opts...))
	defer srv.Close()
	client := &http.Client{Transport: tracinghttp.Transport(nil, opts...)}
	defer client.CloseIdleConnections()

	get := func(ctx context.Context, path string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	get(t.Context(), "/healthz")
	get(t.Context(), "/status")
	ctx, parent := tel.TracerProvider().Tracer("test").Start(t.Context(), "caller")
	get(ctx, "/orders/7")
	parent.End()
	handlerSpan := <-seen

	vitamintest.Eventually(t, 5*time.Second, func() error {
		if len(rec.Ended()) < 3 {
			return errors.New("spans not ended")
		}
		return nil
	})
	if n := len(rec.Ended()); n != 3 {
		for _, s := range rec.Ended() {
			t.Logf("span %s %s %v", s.SpanKind(), s.Name(), s.Attributes())
		}
		t.Fatalf("%d spans, want 3 (caller, client, server): health checks must not be traced", n)
	}
	spans := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.SpanKind()] = s
	}
	client1, server := spans[trace.SpanKindClient], spans[trace.SpanKindServer]
	if client1.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span is not the caller's child")
	}
	if server.Parent().SpanID() != client1.SpanContext().SpanID() || server.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("server span is not the client span's child in the caller's trace")
	}
	if handlerSpan.SpanID() != server.SpanContext().SpanID() {
		t.Errorf("handler ran in span %s, want the server span", handlerSpan.SpanID())
	}
	if server.Name() != "GET /orders/{id}" {
		t.Errorf("server span name %q, want the route", server.Name())
	}
}
