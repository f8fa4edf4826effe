// Package telemetry is the one seam through which Vitamin's packages take
// OpenTelemetry providers: the tracing adapters (tracinggrpc, tracinghttp,
// tracingnats) and the packages built on them expose it as their own
// Telemetry type (an alias), which *tracing.Telemetry satisfies. Keeping the
// interface here, on the OpenTelemetry API only, keeps those packages free
// of the SDK and exporters that package tracing links.
package telemetry
