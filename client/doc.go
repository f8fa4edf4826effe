// Package client builds gRPC and HTTP clients that call other services by
// name, with client-side load balancing over a discovery watch.
//
// # What a client does for each call
//
// It resolves the service's instances from a watch, picks one with power of
// two choices over peak-EWMA latency and in-flight requests, ejects
// outliers, routes to subsets (canary weights, version pinning, sticky A/B),
// applies the target's resilience policy (retries and hedges go to another
// instance), propagates the trace context and sends the caller's identity.
//
// gRPC clients are plain *grpc.ClientConn values built with grpc-go's own
// extension points: a resolver given per connection and a balancer. HTTP
// clients are plain *http.Client values for URLs such as
// http://orders/v1/orders/42.
package client
