package tracing

import (
	"context"
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// B3 header names. The single header is "b3"; the multiple headers are
// written in lower case, as the B3 specification asks for case-sensitive
// transports such as NATS (HTTP and gRPC do not mind), and read in any
// case.
const (
	headerB3             = "b3"
	headerB3TraceID      = "x-b3-traceid"
	headerB3SpanID       = "x-b3-spanid"
	headerB3ParentSpanID = "x-b3-parentspanid"
	headerB3Sampled      = "x-b3-sampled"
	headerB3Flags        = "x-b3-flags"
)

// b3Sampling is a B3 sampling state.
type b3Sampling uint8

const (
	b3Defer  b3Sampling = iota // no decision: the receiver decides
	b3Deny                     // do not record
	b3Accept                   // record
	b3Debug                    // record, forced
)

// b3State is what a B3 extraction read: the IDs, if any, the parent span
// ID, if any, and the sampling state. It travels in the context beside the
// remote span context, because an OpenTelemetry span context can say
// neither "deferred", nor "debug", nor "deny" without IDs, nor the
// caller's parent span ID. The sampler built by New and the B3 injection
// read it.
type b3State struct {
	sc       trace.SpanContext // invalid when only a sampling state came
	parent   trace.SpanID
	sampling b3Sampling
}

type b3Key struct{}

func b3StateFrom(ctx context.Context) *b3State {
	st, _ := ctx.Value(b3Key{}).(*b3State)
	return st
}

// about reports whether st was extracted with the span context sc.
func (st *b3State) about(sc trace.SpanContext) bool {
	return st.sc.IsValid() && st.sc.TraceID() == sc.TraceID() && st.sc.SpanID() == sc.SpanID()
}

// b3Propagator reads B3 in both encodings (the single header first, as the
// specification says) and writes the encodings it was built with. It
// carries all four sampling states (accept, deny, defer, debug) and the
// parent span ID in both directions, which go.opentelemetry.io's
// contrib/propagators/b3 does not. It is safe for concurrent use.
type b3Propagator struct {
	single, multi bool
}

var _ propagation.TextMapPropagator = b3Propagator{}

// Fields implements propagation.TextMapPropagator: the headers Inject may
// write.
func (p b3Propagator) Fields() []string {
	var f []string
	if p.single {
		f = append(f, headerB3)
	}
	if p.multi {
		f = append(f, headerB3TraceID, headerB3SpanID, headerB3ParentSpanID, headerB3Sampled, headerB3Flags)
	}
	return f
}

// Extract implements propagation.TextMapPropagator. Invalid or absent B3
// headers leave ctx as it is.
func (b3Propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	st, ok := parseB3Single(carrier.Get(headerB3))
	if !ok {
		st, ok = parseB3Multi(carrier)
	}
	if !ok {
		return ctx
	}
	ctx = context.WithValue(ctx, b3Key{}, &st)
	if st.sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, st.sc)
	}
	return ctx
}

// Inject implements propagation.TextMapPropagator. It writes the span of
// ctx: its trace and span IDs, its parent span ID when it has one (a
// recorded local span, or the caller's when ctx holds the extracted
// context itself), and its sampling state: debug when the trace came in
// as debug, else accept or deny as sampled. A context without a span
// passes on a sampling state that came alone ("b3: 0"); with neither,
// nothing is written, and the receiver decides.
func (p b3Propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	st := b3StateFrom(ctx)
	var out b3State
	switch {
	case sc.IsValid() && sc.IsRemote():
		// No local span (tracing disabled): pass on what came in.
		out.sc, out.sampling = sc, sampling(sc)
		if st != nil && st.about(sc) {
			out.parent, out.sampling = st.parent, st.sampling
		}
	case sc.IsValid():
		out.sc, out.sampling = sc, sampling(sc)
		if ro, ok := span.(interface{ Parent() trace.SpanContext }); ok {
			if parent := ro.Parent(); parent.IsValid() && parent.TraceID() == sc.TraceID() {
				out.parent = parent.SpanID()
			}
		}
		if out.sampling == b3Accept && st != nil && st.sampling == b3Debug && (!st.sc.IsValid() || st.sc.TraceID() == sc.TraceID()) {
			out.sampling = b3Debug
		}
	case st != nil && !st.sc.IsValid():
		out.sampling = st.sampling
	default:
		return
	}
	if p.single {
		carrier.Set(headerB3, formatB3Single(out))
	}
	if p.multi {
		if out.sc.IsValid() {
			carrier.Set(headerB3TraceID, formatB3TraceID(out.sc.TraceID()))
			carrier.Set(headerB3SpanID, out.sc.SpanID().String())
			if out.parent.IsValid() {
				carrier.Set(headerB3ParentSpanID, out.parent.String())
			}
		}
		switch out.sampling {
		case b3Accept:
			carrier.Set(headerB3Sampled, "1")
		case b3Deny:
			carrier.Set(headerB3Sampled, "0")
		case b3Debug:
			// Debug implies accept: the specification asks not to send
			// X-B3-Sampled with it.
			carrier.Set(headerB3Flags, "1")
		}
	}
}

func sampling(sc trace.SpanContext) b3Sampling {
	if sc.IsSampled() {
		return b3Accept
	}
	return b3Deny
}

// formatB3Single writes {TraceId}-{SpanId}-{SamplingState}-{ParentSpanId},
// the last two optional, or the sampling state alone. A deferred state
// has no field, and then no parent either (the specification has no form
// with a parent and no sampling state).
func formatB3Single(st b3State) string {
	var flag string
	switch st.sampling {
	case b3Accept:
		flag = "1"
	case b3Deny:
		flag = "0"
	case b3Debug:
		flag = "d"
	}
	if !st.sc.IsValid() {
		return flag
	}
	var b strings.Builder
	b.Grow(32 + 1 + 16 + 2 + 17)
	b.WriteString(formatB3TraceID(st.sc.TraceID()))
	b.WriteByte('-')
	b.WriteString(st.sc.SpanID().String())
	if flag != "" {
		b.WriteByte('-')
		b.WriteString(flag)
		if st.parent.IsValid() {
			b.WriteByte('-')
			b.WriteString(st.parent.String())
		}
	}
	return b.String()
}

// formatB3TraceID writes a 64-bit trace ID (the high half zero, as a
// 64-bit B3 ID is read) in 16 hex characters, so that a 64-bit peer gets
// back the ID it sent, and a 128-bit one in 32.
func formatB3TraceID(id trace.TraceID) string {
	if [8]byte(id[:8]) == [8]byte{} {
		return hex.EncodeToString(id[8:])
	}
	return id.String()
}

// parseB3Single reads the b3 header: a sampling state alone (0, 1, d), or
// {TraceId}-{SpanId}, optionally followed by -{SamplingState} and then
// -{ParentSpanId}.
func parseB3Single(h string) (b3State, bool) {
	var st b3State
	h = strings.TrimSpace(h)
	if h == "" {
		return st, false
	}
	parts := strings.Split(h, "-")
	if len(parts) == 1 {
		s, ok := parseSingleSampling(parts[0])
		st.sampling = s
		return st, ok && s != b3Defer
	}
	if len(parts) > 4 {
		return st, false
	}
	tid, ok := parseB3TraceID(parts[0])
	if !ok {
		return st, false
	}
	sid, ok := parseB3SpanID(parts[1])
	if !ok {
		return st, false
	}
	if len(parts) >= 3 {
		if st.sampling, ok = parseSingleSampling(parts[2]); !ok || st.sampling == b3Defer {
			return st, false
		}
	}
	if len(parts) == 4 {
		if st.parent, ok = parseB3SpanID(parts[3]); !ok {
			return st, false
		}
	}
	st.sc = remoteSpanContext(tid, sid, st.sampling)
	return st, true
}

func parseSingleSampling(s string) (b3Sampling, bool) {
	switch s {
	case "0":
		return b3Deny, true
	case "1":
		return b3Accept, true
	case "d":
		return b3Debug, true
	}
	return b3Defer, false
}

// parseB3Multi reads the X-B3-* headers: trace and span IDs together or
// neither, a parent span ID only with them, X-B3-Sampled 1 or 0 (true and
// false too, as older tracers sent them; absent defers) and X-B3-Flags 1
// for debug, which wins over X-B3-Sampled.
func parseB3Multi(c propagation.TextMapCarrier) (b3State, bool) {
	var st b3State
	var (
		traceID = strings.TrimSpace(c.Get(headerB3TraceID))
		spanID  = strings.TrimSpace(c.Get(headerB3SpanID))
		parent  = strings.TrimSpace(c.Get(headerB3ParentSpanID))
		sampled = strings.TrimSpace(c.Get(headerB3Sampled))
		flags   = strings.TrimSpace(c.Get(headerB3Flags))
	)
	switch strings.ToLower(sampled) {
	case "":
	case "1", "true":
		st.sampling = b3Accept
	case "0", "false":
		st.sampling = b3Deny
	default:
		return st, false
	}
	if flags == "1" {
		st.sampling = b3Debug
	}
	if traceID == "" && spanID == "" {
		// A sampling state alone; a parent without IDs is meaningless.
		return st, parent == "" && st.sampling != b3Defer
	}
	tid, ok := parseB3TraceID(traceID)
	if !ok {
		return st, false
	}
	sid, ok := parseB3SpanID(spanID)
	if !ok {
		return st, false
	}
	if parent != "" {
		if st.parent, ok = parseB3SpanID(parent); !ok {
			return st, false
		}
	}
	st.sc = remoteSpanContext(tid, sid, st.sampling)
	return st, true
}

func remoteSpanContext(tid trace.TraceID, sid trace.SpanID, s b3Sampling) trace.SpanContext {
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}
	if s == b3Accept || s == b3Debug {
		cfg.TraceFlags = trace.FlagsSampled
	}
	return trace.NewSpanContext(cfg)
}

// parseB3TraceID reads 16 or 32 hex characters (a 64-bit ID becomes the
// low half of a 128-bit one); upper case is accepted.
func parseB3TraceID(s string) (trace.TraceID, bool) {
	var id trace.TraceID
	switch len(s) {
	case 16:
		if _, err := hex.Decode(id[8:], []byte(s)); err != nil {
			return id, false
		}
	case 32:
		if _, err := hex.Decode(id[:], []byte(s)); err != nil {
			return id, false
		}
	default:
		return id, false
	}
	return id, id.IsValid()
}

func parseB3SpanID(s string) (trace.SpanID, bool) {
	var id trace.SpanID
	if len(s) != 16 {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, false
	}
	return id, id.IsValid()
}
