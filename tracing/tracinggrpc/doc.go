// Package tracinggrpc traces gRPC calls and servers with the
// OpenTelemetry contrib stats handlers (otelgrpc.NewClientHandler and
// otelgrpc.NewServerHandler), configured the Vitamin way.
//
// # Use
//
//	conn, err := grpc.NewClient(target, tracinggrpc.DialOption(), …)
//	srv := grpc.NewServer(tracinggrpc.ServerOption())
//
// Without options the handlers report to the OpenTelemetry globals that
// tracing.Setup installs; with WithTelemetry they report to a
// tracing.Telemetry from tracing.New. Before Setup, or without it, they
// still carry the caller's trace context through, and cost little.
//
// # What is left out
//
// Health checks (the grpc.health.v1.Health service) are neither traced nor
// measured: a load balancer polling every second would otherwise bury the
// traces that matter.
package tracinggrpc
