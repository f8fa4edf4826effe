package tracingnats

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderCarrier adapts nats.Header to propagation.TextMapCarrier.
//
// NATS headers are case-sensitive, unlike HTTP ones, and peers write trace
// headers in whatever case they like ("traceparent", "Traceparent",
// "X-B3-TraceId"). Get therefore looks the key up exactly first, then in
// any letter case; Set replaces every letter-case variant of the key, so a
// forwarded message never carries two trace contexts.
//
// A HeaderCarrier is a map: it is not safe for concurrent use while it is
// written to.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key, matched exactly or, failing that, in
// any letter case. It returns "" when the key is absent.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set sets key to value, removing any other letter-case variant of key.
func (c HeaderCarrier) Set(key, value string) {
	for k := range c {
		if k != key && strings.EqualFold(k, key) {
			delete(c, k)
		}
	}
	c[key] = []string{value}
}

// Keys returns the header names, as they are written in the message.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context and baggage of ctx into msg's headers
// with propagator p, creating the header map if msg has none.
func Inject(ctx context.Context, p propagation.TextMapPropagator, msg *nats.Msg) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	p.Inject(ctx, HeaderCarrier(msg.Header))
}

// Extract returns ctx with the trace context and baggage read from h
// with propagator p. A nil h returns ctx unchanged.
func Extract(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return p.Extract(ctx, HeaderCarrier(h))
}
