package tracinghttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// The handler traces what the service serves, the transport what it
// calls; health checks are left out of both.
func Example() {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder() // in production: an exporter
	tel, _ := tracing.New(ctx, tracing.Config{ServiceName: "frontend"}, tracing.WithSpanProcessor(rec))
	defer func() { _ = tel.Shutdown(ctx) }()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(tracinghttp.Handler(mux, "frontend", tracinghttp.WithTelemetry(tel)))
	client := &http.Client{Transport: tracinghttp.Transport(nil, tracinghttp.WithTelemetry(tel))}

	for _, path := range []string{"/healthz", "/orders/7"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = resp.Body.Close()
	}
	client.CloseIdleConnections()
	srv.Close() // waits for the handlers, so the server span has ended
	for _, s := range rec.Ended() {
		fmt.Println(s.SpanKind(), s.Name())
	}
	// Unordered output:
	// server GET /orders/{id}
	// client HTTP GET
}
