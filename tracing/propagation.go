package tracing

import (
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
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
	// Extraction reads both the single and the multiple header forms.
	PropagatorB3 = "b3"
	// PropagatorB3Multi is Zipkin B3 with the multiple X-B3-* headers on
	// injection, as Spring Cloud Sleuth sends them. Extraction reads both
	// forms.
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
func NewPropagator(names ...string) (propagation.TextMapPropagator, error) {
	return newPropagator("Propagators", names)
}

func newPropagator(field string, names []string) (propagation.TextMapPropagator, error) {
	if len(names) == 0 {
		names = []string{PropagatorTraceContext, PropagatorBaggage}
	}
	var (
		props    []propagation.TextMapPropagator
		encoding b3.Encoding
		b3At     = -1
		seen     = map[string]bool{}
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
				encoding |= b3.B3SingleHeader
			} else {
				encoding |= b3.B3MultipleHeader
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
		props[b3At] = b3.New(b3.WithInjectEncoding(encoding))
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
