// Package healthcheck names the requests Vitamin treats as health checks:
// the ones that are neither traced (tracinghttp, tracinggrpc) nor limited,
// shed or counted by a server's resilience limits (resilience.Middleware,
// resiliencegrpc's server interceptors). It is the one list, so that the
// packages cannot drift apart.
package healthcheck
