// Package deps holds the test that keeps Vitamin's dependency rules: a
// package a user may import alone (resilience, discovery, config) does not
// drag in Consul, NATS, gRPC or the OpenTelemetry SDK, and messaging does
// not drag in Consul, gRPC or the SDK. The
// test reads `go list -deps`, so the rules cannot rot as code changes.
package deps
