// Package internal holds code shared by Vitamin's own packages and tests
// that users do not import: the test environment with real Consul, NATS and
// PostgreSQL lives in [github.com/vitamin-go/vitamin/internal/testenv].
package internal
