// Package tracingnats carries one trace across NATS messages: a
// propagation.TextMapCarrier over nats.Header, and producer and consumer
// spans that follow the OpenTelemetry messaging semantic conventions.
//
// # Headers
//
// NATS headers are case-sensitive, unlike HTTP headers. HeaderCarrier
// reads "traceparent", "Traceparent" or "TRACEPARENT" (and the B3 headers)
// alike, and writes each key once.
//
// # Spans
//
// Span names are "{messaging.operation.name} {destination}", as the
// conventions ask, with NATS's own operation names: "publish <subject>"
// and "process <subject>". Tracer.StartPublish starts a producer span and
// writes its context and the baggage into the message headers.
// Tracer.StartProcess reads them on the consumer side and starts a
// consumer span as the child of the producer span, so that the handler's
// work, and any call it makes, joins the same trace. ProcessSpans starts
// the same consumer spans for the many messages of one subscription,
// building their options once per subject. Tracer.Publish and
// Tracer.MsgHandler do both for core NATS; the JetStream publisher and
// consumer of package messaging use StartPublish and ProcessSpans.
//
// # Telemetry
//
// A Tracer takes its providers from the OpenTelemetry globals, or from a
// Telemetry (WithTelemetry): the same interface as the other tracing
// adapters, implemented by *tracing.Telemetry, so that this package stays
// on the OpenTelemetry API.
package tracingnats
