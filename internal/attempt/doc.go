// Package attempt is the seam between a resilience policy and the
// transport that carries one of its attempts: a transport that sees the
// attempt is stuck — its instance answers nothing while the others answer
// — can end it as timed out before its deadline, so that the policy
// retries it on another instance while the call still has time.
//
// The resilience executor puts a Stall into the context of every attempt
// that a retry can follow; the client's balancer, which sees every
// instance's answers, uses it. Users do not import this package.
package attempt
