package tracinggrpc_test

import (
	"context"
	"net"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
)

// BenchmarkUnaryCall measures the per-call cost of an in-process (bufconn)
// unary gRPC call at each point, for Vitamin's tracinggrpc and, beside it,
// bare otelgrpc given the same providers:
//
//   - none: no stats handler at all;
//   - nosetup: handlers built without Setup (the no-op global providers);
//   - ratio0: Setup-equivalent telemetry, sampler ratio 0;
//   - ratio1: sampler ratio 1, spans to a batch processor with a discarding exporter.
//
// The budget: vitamin/X no worse than otelgrpc/X at each point.
func BenchmarkUnaryCall(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchCall(b, nil, nil) })

	for _, point := range []string{"nosetup", "ratio0", "ratio1"} {
		var tel *tracing.Telemetry
		if point != "nosetup" {
			ratio := 0.0
			var opts []tracing.Option
			if point == "ratio1" {
				ratio = 1
				opts = append(opts, tracing.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter())))
			}
			var err error
			tel, err = tracing.New(context.Background(), tracing.Config{ServiceName: "bench", Exporter: tracing.ExporterNone, SampleRatio: &ratio}, opts...)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.Run("vitamin/"+point, func(b *testing.B) {
			var opts []tracinggrpc.Option
			if tel != nil {
				opts = append(opts, tracinggrpc.WithTelemetry(tel))
			}
			benchCall(b, []grpc.ServerOption{tracinggrpc.ServerOption(opts...)}, []grpc.DialOption{tracinggrpc.DialOption(opts...)})
		})
		b.Run("otelgrpc/"+point, func(b *testing.B) {
			var opts []otelgrpc.Option
			if tel != nil {
				opts = append(opts,
					otelgrpc.WithTracerProvider(tel.TracerProvider()),
					otelgrpc.WithMeterProvider(tel.MeterProvider()),
					otelgrpc.WithPropagators(tel.Propagator()))
			}
			benchCall(b, []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(opts...))},
				[]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(opts...))})
		})
		if tel != nil {
			_ = tel.Shutdown(context.Background())
		}
	}
}

func benchCall(b *testing.B, server []grpc.ServerOption, dial []grpc.DialOption) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(server...)
	testpb.RegisterTestServiceServer(srv, emptyServer{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet", append(dial,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := testpb.NewTestServiceClient(conn)
	ctx := context.Background()
	if _, err := client.EmptyCall(ctx, &testpb.Empty{}); err != nil { // connect outside the timing
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			b.Fatal(err)
		}
	}
}
