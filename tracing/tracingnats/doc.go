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
// Tracer.StartPublish starts a producer span ("publish <subject>") and
// writes its context and the baggage into the message headers.
// Tracer.StartProcess reads them on the consumer side and starts a
// consumer span ("process <subject>") as the child of the producer span,
// so that the handler's work, and any call it makes, joins the same trace.
// Tracer.Publish and Tracer.MsgHandler do both for core NATS; the
// JetStream code of the messaging package uses StartPublish and
// StartProcess.
package tracingnats
