// Package app wires the skeleton service: it loads the configuration,
// builds the service on Vitamin's service package, and decides what the
// service runs on.
//
// # What it runs on
//
// With nothing configured, the service runs alone on a developer's machine:
//
//   - discovery: in memory (discovery.Memory), unless a Consul agent is
//     named by service.consul.address or CONSUL_HTTP_ADDR; then the service
//     registers with it, finds the pricing service through it, and layers
//     Consul KV (config/skeleton/) above the file, live;
//   - messaging: an embedded NATS broker with JetStream in a temporary
//     directory, unless nats.url or NATS_URL names a NATS server.
//
// Build the binary with -tags production to refuse the embedded broker:
// a production instance without a broker then fails to start instead of
// keeping its events in a temporary directory.
//
// The service logs what it runs on when it starts.
package app
