// Package resilience protects calls to other services: timeouts, retries
// with budgets, circuit breakers, bulkheads, rate limits, hedging and
// fallbacks, built on github.com/failsafe-go/failsafe-go.
//
// # Policies as data
//
// A Policy is plain data that can be loaded from a file, the environment or
// a config store. Building it validates it and yields an executor; named
// policies are kept in a registry keyed by target and swapped atomically
// when their spec changes, so a breaker whose spec did not change keeps its
// state.
//
// # Errors
//
// Fallbacks receive the cause, and package sentinels tell an open circuit,
// a rejection (bulkhead, rate limit), a timeout and a plain failure apart
// with errors.Is.
//
// This package imports neither gRPC nor any discovery backend; transport
// adapters live in subpackages.
package resilience
