package tracing_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
	"github.com/vitamin-go/vitamin/tracing/tracingnats"
	"github.com/vitamin-go/vitamin/vitamintest"
)

const subject = "orders.placed"

// hop is what one service saw of the request.
type hop struct {
	service string
	span    trace.SpanContext
	tenant  string // the "tenant" baggage member
	header  nats.Header
}

// chain is three services: frontend (HTTP) calls orders (gRPC), which
// publishes on NATS to billing.
type chain struct {
	url  string
	hops chan hop
	rec  *tracetest.SpanRecorder
}

type ordersServer struct {
	testpb.UnimplementedTestServiceServer
	nc   *nats.Conn
	pub  *tracingnats.Tracer
	hops chan<- hop
}

func (s *ordersServer) UnaryCall(ctx context.Context, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.hops <- hop{service: "orders", span: trace.SpanContextFromContext(ctx), tenant: baggage.FromContext(ctx).Member("tenant").Value()}
	msg := nats.NewMsg(subject)
	msg.Data = []byte(`{"order":7}`)
	if err := s.pub.Publish(ctx, s.nc, msg); err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{}, s.nc.Flush()
}

// startChain starts the three services on loopback and the NATS server,
// each with its own propagators, all recording into one span recorder.
func startChain(t *testing.T, frontend, orders, billing []string) *chain {
	t.Helper()
	c := &chain{hops: make(chan hop, 3), rec: tracetest.NewSpanRecorder()}
	tel := func(name string, props []string) *tracing.Telemetry {
		tel, err := tracing.New(t.Context(), tracing.Config{ServiceName: name, Propagators: props}, tracing.WithSpanProcessor(c.rec))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		return tel
	}
	telF, telO, telB := tel("frontend", frontend), tel("orders", orders), tel("billing", billing)
	ns := vitamintest.StartNATS(t)

	// billing: a NATS subscriber.
	ncB := ns.Connect(t)
	sub, err := ncB.Subscribe(subject, tracingnats.New(tracingnats.WithTelemetry(telB)).MsgHandler(context.Background(),
		func(ctx context.Context, msg *nats.Msg) error {
			c.hops <- hop{service: "billing", span: trace.SpanContextFromContext(ctx), tenant: baggage.FromContext(ctx).Member("tenant").Value(), header: msg.Header}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := ncB.Flush(); err != nil {
		t.Fatal(err)
	}

	// orders: a gRPC server that publishes.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(tracinggrpc.ServerOption(tracinggrpc.WithTelemetry(telO)))
	testpb.RegisterTestServiceServer(gs, &ordersServer{nc: ns.Connect(t), pub: tracingnats.New(tracingnats.WithTelemetry(telO)), hops: c.hops})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	// frontend: an HTTP server that calls orders.
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		tracinggrpc.DialOption(tracinggrpc.WithTelemetry(telF)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	orderClient := testpb.NewTestServiceClient(conn)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		c.hops <- hop{service: "frontend", span: trace.SpanContextFromContext(ctx), tenant: baggage.FromContext(ctx).Member("tenant").Value()}
		if _, err := orderClient.UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	hs := httptest.NewServer(tracinghttp.Handler(mux, "frontend", tracinghttp.WithTelemetry(telF)))
	t.Cleanup(hs.Close)
	c.url = hs.URL + "/checkout"
	return c
}

// send posts to the frontend with the given headers and context, and
// returns what each service saw.
func (c *chain) send(t *testing.T, ctx context.Context, client *http.Client, header http.Header) map[string]hop {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /checkout: %s: %s", resp.Status, body)
	}
	hops := map[string]hop{}
	timeout := time.After(10 * time.Second)
	for len(hops) < 3 {
		select {
		case h := <-c.hops:
			hops[h.service] = h
		case <-timeout:
			t.Fatalf("only %d of 3 services saw the request: %v", len(hops), hops)
		}
	}
	return hops
}

// waitSpans waits until n spans have ended.
func (c *chain) waitSpans(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if got := len(c.rec.Ended()); got < n {
			return fmt.Errorf("%d of %d spans ended", got, n)
		}
		return nil
	})
	return c.rec.Ended()
}

func find(t *testing.T, spans []sdktrace.ReadOnlySpan, service string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if v, _ := s.Resource().Set().Value("service.name"); v.AsString() == service && s.SpanKind() == kind {
			return s
		}
	}
	t.Fatalf("no %s span from %s among %d spans", kind, service, len(spans))
	return nil
}

func TestOneTraceAcrossHTTPGRPCAndNATS(t *testing.T) {
	clearOTelEnv(t)
	c := startChain(t, nil, nil, nil)
	client, err := tracing.New(t.Context(), tracing.Config{ServiceName: "client"}, tracing.WithSpanProcessor(c.rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Shutdown(context.Background()) }()

	tenant, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(tenant)
	ctx := baggage.ContextWithBaggage(t.Context(), bag)
	ctx, root := client.TracerProvider().Tracer("test").Start(ctx, "checkout")
	hops := c.send(t, ctx, &http.Client{Transport: tracinghttp.Transport(nil, tracinghttp.WithTelemetry(client))}, nil)
	root.End()

	for _, svc := range []string{"frontend", "orders", "billing"} {
		if got := hops[svc].tenant; got != "acme" {
			t.Errorf("%s saw baggage tenant=%q, want acme", svc, got)
		}
	}

	spans := c.waitSpans(t, 7)
	chain := []sdktrace.ReadOnlySpan{
		find(t, spans, "client", trace.SpanKindInternal),  // checkout
		find(t, spans, "client", trace.SpanKindClient),    // HTTP client
		find(t, spans, "frontend", trace.SpanKindServer),  // HTTP server
		find(t, spans, "frontend", trace.SpanKindClient),  // gRPC client
		find(t, spans, "orders", trace.SpanKindServer),    // gRPC server
		find(t, spans, "orders", trace.SpanKindProducer),  // NATS publish
		find(t, spans, "billing", trace.SpanKindConsumer), // NATS process
	}
	traceID := root.SpanContext().TraceID()
	for i, s := range chain {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("span %q has trace %s, want %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
		if i > 0 && s.Parent().SpanID() != chain[i-1].SpanContext().SpanID() {
			t.Errorf("span %q has parent %s, want %q (%s)", s.Name(), s.Parent().SpanID(), chain[i-1].Name(), chain[i-1].SpanContext().SpanID())
		}
	}
	if got, want := chain[4].Name(), "grpc.testing.TestService/UnaryCall"; got != want {
		t.Errorf("gRPC server span %q, want %q", got, want)
	}
	if got, want := chain[6].Name(), "process "+subject; got != want {
		t.Errorf("consumer span %q, want %q", got, want)
	}
	// Each service's handler ran in its server or consumer span.
	for svc, i := range map[string]int{"frontend": 2, "orders": 4, "billing": 6} {
		if hops[svc].span.SpanID() != chain[i].SpanContext().SpanID() {
			t.Errorf("%s handler ran in span %s, want %q", svc, hops[svc].span.SpanID(), chain[i].Name())
		}
	}
}

func TestB3AndW3CPeersJoinOneTrace(t *testing.T) {
	const (
		traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanHex  = "00f067aa0ba902b7"
	)
	w3c := []string{"tracecontext", "baggage"}
	tests := []struct {
		name                      string
		frontend, orders, billing []string
		header                    http.Header
		wantNATSHeader, notInNATS string
	}{
		{
			name:     "B3 multi in, W3C out",
			frontend: []string{"tracecontext", "baggage", "b3multi"}, orders: w3c, billing: w3c,
			header:         http.Header{"X-B3-Traceid": {traceHex}, "X-B3-Spanid": {spanHex}, "X-B3-Sampled": {"1"}, "Baggage": {"tenant=acme"}},
			wantNATSHeader: "traceparent", notInNATS: "b3",
		},
		{
			name:     "B3 single in, W3C out",
			frontend: []string{"tracecontext", "baggage", "b3"}, orders: w3c, billing: w3c,
			header:         http.Header{"B3": {traceHex + "-" + spanHex + "-1"}, "Baggage": {"tenant=acme"}},
			wantNATSHeader: "traceparent", notInNATS: "b3",
		},
		{
			name:     "W3C in, B3 out",
			frontend: []string{"tracecontext", "baggage", "b3"}, orders: []string{"b3", "baggage"}, billing: []string{"b3multi", "baggage"},
			header:         http.Header{"Traceparent": {"00-" + traceHex + "-" + spanHex + "-01"}, "Baggage": {"tenant=acme"}},
			wantNATSHeader: "b3", notInNATS: "traceparent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearOTelEnv(t)
			c := startChain(t, tt.frontend, tt.orders, tt.billing)
			hops := c.send(t, context.Background(), http.DefaultClient, tt.header)
			for _, svc := range []string{"frontend", "orders", "billing"} {
				if got := hops[svc].span.TraceID().String(); got != traceHex {
					t.Errorf("%s ran in trace %s, want the caller's %s", svc, got, traceHex)
				}
				if got := hops[svc].tenant; got != "acme" {
					t.Errorf("%s saw baggage tenant=%q, want acme", svc, got)
				}
			}
			if v := tracingnats.HeaderCarrier(hops["billing"].header).Get(tt.wantNATSHeader); v == "" {
				t.Errorf("NATS message headers %v lack %s", hops["billing"].header, tt.wantNATSHeader)
			}
			if v := tracingnats.HeaderCarrier(hops["billing"].header).Get(tt.notInNATS); v != "" {
				t.Errorf("NATS message headers carry %s=%s; orders was not configured for it", tt.notInNATS, v)
			}
			spans := c.waitSpans(t, 5)
			server := find(t, spans, "frontend", trace.SpanKindServer)
			if got := server.Parent().SpanID().String(); got != spanHex {
				t.Errorf("frontend server span parent %s, want the caller's %s", got, spanHex)
			}
			if !strings.EqualFold(server.Parent().TraceID().String(), traceHex) {
				t.Errorf("frontend server span in trace %s", server.Parent().TraceID())
			}
		})
	}
}
