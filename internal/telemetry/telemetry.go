// Package telemetry is the one seam through which Vitamin's packages take
// OpenTelemetry providers: the tracing adapters (tracinggrpc, tracinghttp,
// tracingnats) and the packages built on them expose it as their own
// Telemetry type (an alias), which *tracing.Telemetry satisfies. Keeping the
// interface here, on the OpenTelemetry API only, keeps those packages free
// of the SDK and exporters that package tracing links.
package telemetry

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry gives the providers a library reports to. *tracing.Telemetry
// implements it; Global returns the OpenTelemetry globals.
type Telemetry interface {
	TracerProvider() trace.TracerProvider
	MeterProvider() metric.MeterProvider
	Propagator() propagation.TextMapPropagator
}

// Global returns a Telemetry that reads the OpenTelemetry globals
// (otel.GetTracerProvider and the others) each time it is asked, so it
// follows a later tracing.Setup.
func Global() Telemetry { return global{} }

type global struct{}

func (global) TracerProvider() trace.TracerProvider      { return otel.GetTracerProvider() }
func (global) MeterProvider() metric.MeterProvider       { return otel.GetMeterProvider() }
func (global) Propagator() propagation.TextMapPropagator { return otel.GetTextMapPropagator() }
