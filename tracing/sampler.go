package tracing

import (
	"context"
	"os"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// noSpan is what trace.SpanFromContext returns for a context that holds
// no span at all. A span started with trace.WithNewRoot holds another.
var noSpan = trace.SpanFromContext(context.Background())

// parentBased is sdktrace.ParentBased(root) that also honours the B3
// sampling decisions an OpenTelemetry span context cannot carry:
//
//   - a decision that came without IDs ("b3: 0", "b3: 1", "b3: d",
//     X-B3-Sampled or X-B3-Flags alone) is the parent's decision of the
//     new trace: deny drops it, accept and debug record it;
//   - IDs that came without a decision (deferred) leave it to this
//     service: root decides, as for a new trace, and the decision is then
//     sent on (see b3Propagator.Inject).
//
// Everything else is ParentBased(root).
func parentBased(root sdktrace.Sampler) sdktrace.Sampler {
	return b3Sampler{parent: sdktrace.ParentBased(root), root: root}
}

type b3Sampler struct {
	parent, root sdktrace.Sampler
}

func (s b3Sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if st := b3StateFrom(p.ParentContext); st != nil {
		psc := trace.SpanContextFromContext(p.ParentContext)
		switch {
		case !st.sc.IsValid() && trace.SpanFromContext(p.ParentContext) == noSpan:
			switch st.sampling {
			case b3Deny:
				return sdktrace.SamplingResult{Decision: sdktrace.Drop}
			case b3Accept, b3Debug:
				return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
			}
		case st.sampling == b3Defer && psc.IsRemote() && st.about(psc) && !psc.IsSampled():
			return s.root.ShouldSample(p)
		}
	}
	return s.parent.ShouldSample(p)
}

func (s b3Sampler) Description() string {
	return "B3" + s.parent.Description()
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK would build it, with the
// parent-based ones made B3-aware; nil when the variable is empty. Unlike
// the SDK, which falls back to the default, an unsupported sampler or a
// bad ratio is an error.
func samplerFromEnv() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	if name == "" {
		return nil, nil
	}
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, configErr("OTEL_TRACES_SAMPLER_ARG", arg, "must be a ratio between 0 and 1", err)
		}
		return r, nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_always_on":
		return parentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return parentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		return parentBased(sdktrace.TraceIDRatioBased(r)), err
	default:
		return nil, configErr("OTEL_TRACES_SAMPLER", name, "unsupported sampler (want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", nil)
	}
}
