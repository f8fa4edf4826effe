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
