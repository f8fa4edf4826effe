package tracinggrpc_test

import (
	"context"
	"fmt"
	"net"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
)

type emptyServer struct {
	testpb.UnimplementedTestServiceServer
}

func (emptyServer) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

// The server and the client share one set of options; without
// WithTelemetry they use the globals that tracing.Setup installs.
func Example() {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder() // in production: an exporter
	tel, _ := tracing.New(ctx, tracing.Config{ServiceName: "orders"}, tracing.WithSpanProcessor(rec))
	defer func() { _ = tel.Shutdown(ctx) }()

	srv := grpc.NewServer(tracinggrpc.ServerOption(tracinggrpc.WithTelemetry(tel)))
	testpb.RegisterTestServiceServer(srv, emptyServer{})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, _ := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		tracinggrpc.DialOption(tracinggrpc.WithTelemetry(tel)))
	defer func() { _ = conn.Close() }()
	if _, err := testpb.NewTestServiceClient(conn).EmptyCall(ctx, &testpb.Empty{}); err != nil {
		fmt.Println(err)
		return
	}
	srv.GracefulStop() // the server span ends when the call is done
	for _, s := range rec.Ended() {
		fmt.Println(s.SpanKind(), s.Name())
	}
	// Unordered output:
	// client grpc.testing.TestService/EmptyCall
	// server grpc.testing.TestService/EmptyCall
}
