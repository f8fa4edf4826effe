// Package tracinghttp traces HTTP servers and clients with the
// OpenTelemetry contrib otelhttp handler and transport, configured the
// Vitamin way.
//
// # Use
//
//	http.ListenAndServe(addr, tracinghttp.Handler(mux, "orders"))
//	client := &http.Client{Transport: tracinghttp.Transport(nil)}
//
// Send requests with their context (http.NewRequestWithContext) so that
// the client span becomes a child of the caller's span.
//
// Without options the handler and transport report to the OpenTelemetry
// globals that tracing.Setup installs; with WithTelemetry they report to a
// tracing.Telemetry from tracing.New.
//
// # What is left out
//
// Health-check paths (DefaultHealthPaths: /health, /healthz, /livez,
// /readyz, /ready, /live; change them with WithHealthPaths) are neither
// traced nor measured.
package tracinghttp
