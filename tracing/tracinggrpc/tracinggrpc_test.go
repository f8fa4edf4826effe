package tracinggrpc_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testServer struct {
	testpb.UnimplementedTestServiceServer
	seen chan trace.SpanContext
}

func (s *testServer) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	s.seen <- trace.SpanContextFromContext(ctx)
	return &testpb.Empty{}, nil
}

// serve starts a gRPC server on loopback with the test and health
// services, and returns a client connection to it.
func serve(t testing.TB, server, client []grpc.ServerOption, dial ...grpc.DialOption) (*grpc.ClientConn, *testServer) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(server...)
	ts := &testServer{seen: make(chan trace.SpanContext, 1)}
	testpb.RegisterTestServiceServer(srv, ts)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, ts
}

func TestCallsAreTracedAndHealthChecksAreNot(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, err := tracing.New(t.Context(), tracing.Config{ServiceName: "orders", Exporter: tracing.ExporterNone}, tracing.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	conn, ts := serve(t, []grpc.ServerOption{tracinggrpc.ServerOption(tracinggrpc.WithTelemetry(tel))}, nil,
		tracinggrpc.DialOption(tracinggrpc.WithTelemetry(tel)))

	for range 3 {
		if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, parent := tel.TracerProvider().Tracer("test").Start(t.Context(), "caller")
	if _, err := testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	handlerSpan := <-ts.seen

	vitamintest.Eventually(t, 5*time.Second, func() error {
		if len(rec.Ended()) < 3 {
			return errors.New("spans not ended")
		}
		return nil
	})
	spans := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.Name() == "grpc.health.v1.Health/Check" {
			t.Errorf("health check traced: %v", s.Name())
		}
		spans[s.SpanKind()] = s
	}
	if n := len(rec.Ended()); n != 3 {
		t.Errorf("%d spans, want 3 (caller, client, server)", n)
	}
	client, server := spans[trace.SpanKindClient], spans[trace.SpanKindServer]
	if client == nil || server == nil {
		t.Fatalf("want a client and a server span, got %v", spans)
	}
	if client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span is not the caller's child")
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || server.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("server span is not the client span's child in the caller's trace")
	}
	if handlerSpan.SpanID() != server.SpanContext().SpanID() {
		t.Errorf("handler ran in span %s, want the server span %s", handlerSpan.SpanID(), server.SpanContext().SpanID())
	}
	if server.Name() != "grpc.testing.TestService/EmptyCall" {
		t.Errorf("server span name %q", server.Name())
	}
}
