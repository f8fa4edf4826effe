package healthcheck

import "strings"

// GRPCService is the full name of gRPC's standard health service; each of
// its methods (Check, List, Watch) is a health check.
const GRPCService = "grpc.health.v1.Health"

// Paths returns the HTTP request paths that are health checks unless a
// package's option says otherwise: /health, /healthz, /livez, /readyz,
// /ready and /live. Each call returns a new slice.
func Paths() []string {
	return []string{"/health", "/healthz", "/livez", "/readyz", "/ready", "/live"}
}

// IsGRPC reports whether fullMethod ("/pkg.Service/Method", with or
// without the leading slash) is a method of GRPCService.
func IsGRPC(fullMethod string) bool {
	m := strings.TrimPrefix(fullMethod, "/")
	return len(m) > len(GRPCService) && m[len(GRPCService)] == '/' && strings.HasPrefix(m, GRPCService)
}
