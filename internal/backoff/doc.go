// Package backoff is the one wait-and-retry schedule of Vitamin's loops: the
// Consul blocking queries (discovery and configuration), the gRPC client's
// watch, the publisher's retries and the consumer's redeliveries. The wait
// grows exponentially from Backoff to MaxBackoff and is spread with "equal
// jitter" (between half and all of it), so that many processes that failed
// together do not retry in step.
//
// Every Config that has such a loop spells its settings the same way, as
// resilience.Retry does: Backoff (the first wait) and MaxBackoff (the cap),
// with yaml/json keys backoff and max_backoff.
package backoff
