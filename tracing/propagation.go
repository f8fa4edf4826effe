package tracing

import (
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// Propagator names, as used in Config.Propagators and in the standard
// OTEL_PROPAGATORS environment variable.
const (
	// PropagatorTraceContext is W3C Trace Context (traceparent, tracestate).
	PropagatorTraceContext = "tracecontext"
	// PropagatorBaggage is W3C Baggage (baggage).
	PropagatorBaggage = "baggage"
	// PropagatorB3 is Zipkin B3 with a single "b3" header on injection.
	// Extraction reads both the single and the multiple header forms. See
	// NewPropagator for the sampling states.
	PropagatorB3 = "b3"
	// PropagatorB3Multi is Zipkin B3 with the multiple X-B3-* headers on
	// injection, as Spring Cloud Sleuth sends them. Extraction reads both
	// forms. Listing both b3 and b3multi writes both.
	PropagatorB3Multi = "b3multi"
	// PropagatorNone disables propagation; it must be the only name.
	PropagatorNone = "none"
)

// NewPropagator builds a composite propagator from names (see the
// Propagator constants), in the given order. With no names it returns W3C
// trace context and baggage. Unknown names fail with a *FieldError for
// field "Propagators". The propagator is safe for concurrent use.
//
// To join traces with Zipkin or Spring Cloud Sleuth peers while keeping W3C
// for the others, list both: tracecontext, baggage, b3multi. Incoming
// requests in either format are then joined, and outgoing ones carry both.
//
// # B3
//
// B3 follows the openzipkin b3-propagation specification in both
// directions. 64- and 128-bit trace IDs are read; a 64-bit one is sent on
// as 64 bits. The caller's parent span ID is read, and an outgoing request
// from a recorded span carries that span's parent (X-B3-ParentSpanId, or
// the fourth field of b3). The sampling states:
//
//   - accept (1) and debug (d, X-B3-Flags: 1) are sampled; debug is sent
//     on as debug for the whole trace, without X-B3-Sampled;
//   - deny (0) is not sampled, and is sent on as 0, with the trace's IDs
//     when it has them (the specification asks for them, so that logs
//     can be correlated) — also when it came alone, as "b3: 0" or
//     X-B3-Sampled: 0, since the service's span gives the trace IDs;
//   - defer (IDs without a state) leaves the decision to this service:
//     its sampler decides as for a new trace, keeping the IDs, and the
//     decision is sent on, so that every later hop agrees with it;
//   - with tracing disabled (no span of its own), a service passes on
//     exactly what it received, a deferred state or a lone "b3: 0"
//     included; a context with no trace at all writes no B3 header.
//
// The sampling decisions that OpenTelemetry's span context cannot hold
// (deny or debug without IDs, deferred) are honoured by the sampler that
// New and Setup build; a tracer provider of your own sees deny and debug
// without IDs as no parent, and deferred as not sampled.
func NewPropagator(names ...string) (propagation.TextMapPropagator, error) {
	return newPropagator("Propagators", names)
}

func newPropagator(field string, names []string) (propagation.TextMapPropagator, error) {
	if len(names) == 0 {
		names = []string{PropagatorTraceContext, PropagatorBaggage}
	}
	var (
		props []propagation.TextMapPropagator
		b3    b3Propagator
		b3At  = -1
		seen  = map[string]bool{}
	)
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case PropagatorTraceContext:
			props = append(props, propagation.TraceContext{})
		case PropagatorBaggage:
			props = append(props, propagation.Baggage{})
		case PropagatorB3, PropagatorB3Multi:
			if name == PropagatorB3 {
				b3.single = true
			} else {
				b3.multi = true
			}
			if b3At < 0 {
				b3At = len(props)
				props = append(props, nil) // filled in below, once the encoding is known
			}
		case PropagatorNone:
			if len(names) != 1 {
				return nil, configErr(field, strings.Join(names, ","), fmt.Sprintf("%q must be the only propagator", PropagatorNone), nil)
			}
			return propagation.NewCompositeTextMapPropagator(), nil
		default:
			return nil, configErr(field, raw, fmt.Sprintf("unknown propagator (want %s, %s, %s, %s or %s)",
				PropagatorTraceContext, PropagatorBaggage, PropagatorB3, PropagatorB3Multi, PropagatorNone), nil)
		}
	}
	if b3At >= 0 {
		props[b3At] = b3
	}
	return propagation.NewCompositeTextMapPropagator(props...), nil
}

// propagatorNames returns the names from the config, else from
// OTEL_PROPAGATORS, and the name of the field they came from.
func propagatorNames(cfg []string) (string, []string) {
	if len(cfg) > 0 {
		return "Propagators", cfg
	}
	if env := strings.TrimSpace(os.Getenv("OTEL_PROPAGATORS")); env != "" {
		return "OTEL_PROPAGATORS", strings.Split(env, ",")
	}
	return "Propagators", nil
}
