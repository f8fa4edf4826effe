// Package tracing sets up OpenTelemetry for a service and carries one trace
// across gRPC, HTTP and NATS messages, with logs that name it.
//
// # Setup
//
// Setup creates the tracer and meter providers for the service, with its
// name, version and instance ID as resource attributes, an exporter chosen
// by configuration and a parent-based ratio sampler. Without Setup,
// everything is a no-op that costs almost nothing.
//
// # Propagation
//
// W3C trace context and baggage by default, B3 on request. A carrier over
// NATS headers reads trace headers in any letter case.
//
// # Logs
//
// A slog.Handler wrapper adds trace_id and span_id to every record logged
// with a context that carries a span.
package tracing
