// Package resiliencegrpc applies resilience policies to gRPC: unary and
// streaming interceptors for clients and servers.
//
// # Clients
//
// UnaryClientInterceptor runs each call through the executor a
// resilience.Registry gives for the target service and the full method
// ("pkg.Service/Method"): retries with backoff and budget, hedging (each
// attempt decodes into its own reply), circuit breaker, rate limit,
// bulkhead, and a per-attempt deadline that gRPC sends to the server as
// grpc-timeout. StreamClientInterceptor guards a stream's establishment
// (breaker, rate limit, bulkhead) and counts its final outcome; streams are
// not retried, hedged or given the per-attempt timeout.
//
// Errors keep their gRPC status, so status.Code works as usual. A call
// refused by a policy fails with a status (UNAVAILABLE for an open circuit,
// RESOURCE_EXHAUSTED for a client-side limit, DEADLINE_EXCEEDED for a
// timeout) that also matches resilience.ErrCircuitOpen, ErrRejected or
// ErrTimeout with errors.Is.
//
// # Servers
//
// UnaryServerInterceptor and StreamServerInterceptor shed load before the
// handler runs: per-caller limits keyed by Caller (the
// resilience.CallerMetadataKey metadata, else the caller the Vitamin
// client names in its user agent) answer RESOURCE_EXHAUSTED, as does the
// executor's rate limit; a full bulkhead or an open circuit answers
// UNAVAILABLE. Every such rejection carries the grpc-retry-pushback-ms
// trailer, gRPC's Retry-After, in milliseconds (resilience.Pushback): the
// time to the next permit for a rate limit, the remaining open time for an
// open circuit, and resilience.BusyRetryAfter (one second) for a full
// bulkhead or a caller's concurrency limit.
//
// The grpc.health.v1.Health service (Check, List, Watch) is never limited,
// shed, timed out or counted: a Consul gRPC check keeps answering while the
// server is at its limits, and an open Watch stream holds no bulkhead slot.
//
// # Classification
//
// Classify maps status codes to outcomes: UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED and ABORTED are retried by default; UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS count against the
// breaker; client errors such as INVALID_ARGUMENT or NOT_FOUND do neither.
// Retry.On takes the upper-case code names, such as "UNAVAILABLE".
package resiliencegrpc
