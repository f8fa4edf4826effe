package tracing

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Attribute keys the log handler adds.
const (
	// TraceIDKey is the key of the trace ID, 32 lowercase hex digits.
	TraceIDKey = "trace_id"
	// SpanIDKey is the key of the span ID, 16 lowercase hex digits.
	SpanIDKey = "span_id"
)

// LogHandler wraps another slog.Handler and adds trace_id and span_id to
// every record logged with a context that carries a valid span context
// (a local span, or a remote one just extracted from a request). Records
// logged without a context, or with one that carries no span, pass through
// unchanged.
//
// The IDs are added at the top level of the record, outside any group
// opened with WithGroup, so that log queries find them in the same place
// in every line.
//
// A LogHandler is safe for concurrent use if the wrapped handler is.
type LogHandler struct {
	inner slog.Handler
	// groups holds the groups opened with WithGroup and the attributes
	// added inside them, outermost first. They are applied at Handle time
	// so that the IDs stay at the top level. Never modified once set.
	groups []groupAttrs
}

type groupAttrs struct {
	name  string
	attrs []slog.Attr
}

// NewLogHandler returns a handler that adds trace and span IDs to the
// records it passes to h.
//
//	logger := slog.New(tracing.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil)))
//	logger.InfoContext(ctx, "order placed") // … "trace_id":"…","span_id":"…"
func NewLogHandler(h slog.Handler) *LogHandler {
	if lh, ok := h.(*LogHandler); ok {
		return lh
	}
	return &LogHandler{inner: h}
}

// Enabled reports whether the wrapped handler handles records at level.
func (h *LogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the IDs when ctx carries a span context, and passes the
// record on.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		if len(h.groups) == 0 {
			return h.inner.Handle(ctx, r)
		}
		return h.inner.Handle(ctx, h.nest(r, nil))
	}
	ids := [2]slog.Attr{
		slog.String(TraceIDKey, sc.TraceID().String()),
		slog.String(SpanIDKey, sc.SpanID().String()),
	}
	if len(h.groups) == 0 {
		r = r.Clone() // a copy shares attribute storage with the caller's
		r.AddAttrs(ids[:]...)
		return h.inner.Handle(ctx, r)
	}
	return h.inner.Handle(ctx, h.nest(r, ids[:]))
}

// nest builds a record with top-level attributes top and the record's own
// attributes inside the open groups.
func (h *LogHandler) nest(r slog.Record, top []slog.Attr) slog.Record {
	inner := make([]any, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		args := make([]any, 0, len(g.attrs)+len(inner))
		for _, a := range g.attrs {
			args = append(args, a)
		}
		args = append(args, inner...)
		inner = []any{slog.Group(g.name, args...)}
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(top...)
	out.Add(inner...)
	return out
}

// WithAttrs returns a handler whose records carry attrs, inside the groups
// opened so far.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		return &LogHandler{inner: h.inner.WithAttrs(attrs)}
	}
	groups := append([]groupAttrs(nil), h.groups...)
	last := &groups[len(groups)-1]
	last.attrs = append(append([]slog.Attr(nil), last.attrs...), attrs...)
	return &LogHandler{inner: h.inner, groups: groups}
}

// WithGroup returns a handler that puts the record's attributes, and
// those added later with WithAttrs, in group name. The trace and span IDs
// stay at the top level.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	groups := append(append([]groupAttrs(nil), h.groups...), groupAttrs{name: name})
	return &LogHandler{inner: h.inner, groups: groups}
}

var _ slog.Handler = (*LogHandler)(nil)
