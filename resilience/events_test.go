package resilience_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestEventsReachLogsMetricsAndSnapshot(t *testing.T) {
	metrics := vitamintest.NewMetrics(t)
	var logs vitamintest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	r, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		Retry:          &resilience.Retry{MaxAttempts: 2},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: time.Hour},
	}}, resilience.WithLogger(logger), resilience.WithMeterProvider(metrics.Provider))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e := r.For("orders", "")
	_ = e.Run(ctx, succeed)
	_ = e.RunWithFallback(ctx, fail, func(context.Context, error) error { return nil }) // 2 failed attempts open the breaker
	_ = e.Run(ctx, succeed)                                                             // rejected

	snap := r.Snapshot()
	if len(snap) != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	s := snap[0]
	if s.Policy != "orders" || s.Circuit != "open" || s.Calls != 3 || s.Failures != 2 || s.Rejected != 1 || s.Retries != 1 || s.Fallbacks != 1 || s.CircuitOpenFor <= 0 {
		t.Fatalf("snapshot %+v", s)
	}

	for _, want := range []string{"level=WARN msg=\"resilience: circuit open\" policy=orders", "resilience: retrying", "resilience: rejected", "resilience: fallback"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	for _, m := range []struct {
		name string
		attr []attribute.KeyValue
		want int64
	}{
		{resilience.MetricCalls, []attribute.KeyValue{attribute.String("outcome", "success")}, 1},
		{resilience.MetricCalls, []attribute.KeyValue{attribute.String("outcome", "failure")}, 1},
		{resilience.MetricCalls, []attribute.KeyValue{attribute.String("outcome", "circuit_open")}, 1},
		{resilience.MetricRetries, nil, 1},
		{resilience.MetricRejections, []attribute.KeyValue{attribute.String("reason", "circuit_open")}, 1},
		{resilience.MetricFallbacks, []attribute.KeyValue{attribute.String("cause", "failure")}, 1},
		{resilience.MetricCircuitTransitions, []attribute.KeyValue{attribute.String("state", "open")}, 1},
	} {
		if got := metrics.Sum(t, m.name, m.attr...); got != m.want {
			t.Errorf("metric %s %v = %d, want %d", m.name, m.attr, got, m.want)
		}
	}
}
