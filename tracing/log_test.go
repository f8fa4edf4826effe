package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing"
)

func logLine(t *testing.T, log func(l *slog.Logger)) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		return a
	}})
	log(slog.New(tracing.NewLogHandler(h)))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("log output %q: %v", buf.String(), err)
	}
	return m
}

func TestLogHandlerAddsTraceAndSpanIDs(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, tracing.Config{ServiceName: "s"})
	ctx, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "work")
	defer span.End()
	traceID, spanID := span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()

	tests := []struct {
		name string
		log  func(l *slog.Logger)
		want map[string]any
	}{
		{
			"with a span",
			func(l *slog.Logger) { l.InfoContext(ctx, "placed", "order", 7) },
			map[string]any{"msg": "placed", "order": 7.0, "trace_id": traceID, "span_id": spanID},
		},
		{
			"without a span",
			func(l *slog.Logger) { l.InfoContext(context.Background(), "placed", "order", 7) },
			map[string]any{"msg": "placed", "order": 7.0},
		},
		{
			"without a context",
			func(l *slog.Logger) { l.Info("placed") },
			map[string]any{"msg": "placed"},
		},
		{
			"with attributes before and inside groups",
			func(l *slog.Logger) {
				l.With("svc", "orders").WithGroup("req").With("id", "r1").WithGroup("db").InfoContext(ctx, "slow", "ms", 12)
			},
			map[string]any{
				"msg": "slow", "svc": "orders", "trace_id": traceID, "span_id": spanID,
				"req": map[string]any{"id": "r1", "db": map[string]any{"ms": 12.0}},
			},
		},
		{
			"inside a group without a span",
			func(l *slog.Logger) { l.WithGroup("req").InfoContext(context.Background(), "slow", "ms", 12) },
			map[string]any{"msg": "slow", "req": map[string]any{"ms": 12.0}},
		},
		{
			"with a remote span context only",
			func(l *slog.Logger) {
				sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab}, SpanID: trace.SpanID{0xcd}, Remote: true})
				l.InfoContext(trace.ContextWithRemoteSpanContext(context.Background(), sc), "in")
			},
			map[string]any{"msg": "in", "trace_id": "ab000000000000000000000000000000", "span_id": "cd00000000000000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, logLine(t, tt.log)); diff != "" {
				t.Errorf("log line (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogHandlerLeavesTheCallersRecordAlone(t *testing.T) {
	clearOTelEnv(t)
	tel, _ := newTelemetry(t, tracing.Config{ServiceName: "s"})
	ctx, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "work")
	defer span.End()
	var plain, traced bytes.Buffer
	h := tracing.NewLogHandler(slog.NewTextHandler(&traced, nil))
	r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.Int("a", 1), slog.Int("b", 2), slog.Int("c", 3), slog.Int("d", 4), slog.Int("e", 5), slog.Int("f", 6))
	if err := h.Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	// The same record handed to another handler (as a fan-out does) must
	// not have picked up the IDs.
	if err := slog.NewTextHandler(&plain, nil).Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain.Bytes(), []byte("trace_id")) {
		t.Errorf("the caller's record was changed: %s", plain.String())
	}
	if !bytes.Contains(traced.Bytes(), []byte("trace_id")) {
		t.Errorf("no trace_id in %s", traced.String())
	}
}
