package consul_test

import (
	"context"
	"log/slog"
	"testing"
)

// testLogger writes to the test's log, so that a failing test shows what
// the registrar and watcher said.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(&tbHandler{t: t})
}

type tbHandler struct {
	t     testing.TB
	attrs []slog.Attr
}

func (h *tbHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *tbHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Level.String() + " " + r.Message
	for _, a := range h.attrs {
		msg += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	h.t.Log(msg)
	return nil
}
func (h *tbHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &tbHandler{t: h.t, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *tbHandler) WithGroup(string) slog.Handler { return h }
