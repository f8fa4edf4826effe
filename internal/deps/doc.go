// Package deps holds the test that keeps Vitamin's dependency rules: a
// package a user may import alone (resilience, discovery, config) does not
// drag in Consul, NATS, gRPC or the OpenTelemetry SDK; messaging, client and
// the tracing adapters use the OpenTelemetry API only, leaving the SDK and
// exporters to the application that calls tracing.Setup. The test reads
// `go list -deps`, so the rules cannot rot as code changes.
package deps
