// Package tracing sets up OpenTelemetry for a service and carries one trace
// across gRPC, HTTP and NATS messages, with logs that name it.
//
// # Setup
//
// Setup creates the tracer and meter providers for the service, with its
// name, version and instance ID as resource attributes, an exporter chosen
// by configuration (OTLP over gRPC or HTTP, stdout, none) and a
// parent-based ratio sampler, and installs them as the OpenTelemetry
// globals. It returns a shutdown function that flushes. New builds the
// same Telemetry without touching the globals. Without Setup, everything
// is a no-op that costs almost nothing, and an incoming trace context is
// still passed on.
//
// Invalid settings fail New and Setup with a *FieldError that names the
// Config field or the environment variable, behind ErrInvalidConfig:
//
//	tracing: invalid configuration: SampleRatio = 2: must be between 0 and 1
//
// # Environment
//
// A Config field that is set wins; an empty one falls back to the standard
// variables. Read by the OpenTelemetry SDK and exporters: OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
// OTEL_BSP_*, OTEL_SPAN_*_LIMIT, OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT,
// and OTEL_EXPORTER_OTLP_* (endpoint, headers, certificates, compression,
// timeout, per signal too). Read by this package, since the SDK does not:
// OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
// OTEL_EXPORTER_OTLP_PROTOCOL (and the per-signal forms) and
// OTEL_PROPAGATORS.
//
// # Propagation
//
// W3C trace context and baggage by default; B3, single or multiple header,
// on request, to join traces with Zipkin or Spring Cloud Sleuth peers. B3
// is this package's own propagator: it honours the four B3 sampling
// states in both directions (accept, deny, defer, debug; a lone "b3: 0"
// is not sampled and is sent on as deny), reads 64- and 128-bit trace
// IDs, and sends the parent span ID of a recorded span. NewPropagator
// gives the details; docs/wire.md lists every header.
//
// # Transports
//
// The adapters live in subpackages, so that this one stays light:
// tracinggrpc (stats handlers for clients and servers), tracinghttp
// (handler and transport) and tracingnats (a header carrier and producer
// and consumer spans). Health checks are left out of traces. Each takes
// its providers through the same Telemetry interface, which *Telemetry
// satisfies, so a library built on them needs the OpenTelemetry API only.
//
// # Logs
//
// NewLogHandler wraps a slog.Handler and adds trace_id and span_id to
// every record logged with a context that carries a span.
package tracing
