package resilience_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/vitamin-go/vitamin/resilience"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEventsReachLogsMetricsAndSnapshot(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	r, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		Retry:          &resilience.Retry{MaxAttempts: 2},
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 2, FailureRate: 1, MinRequests: 2, OpenFor: time.Hour},
	}}, resilience.WithLogger(logger), resilience.WithMeterProvider(mp))
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

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				key := m.Name
				for _, kv := range dp.Attributes.ToSlice() {
					if kv.Key != "policy" {
						key += " " + string(kv.Key) + "=" + kv.Value.AsString()
					}
				}
				got[key] += dp.Value
			}
		}
	}
	for key, n := range map[string]int64{
		resilience.MetricCalls + " outcome=success":          1,
		resilience.MetricCalls + " outcome=failure":          1,
		resilience.MetricCalls + " outcome=circuit_open":     1,
		resilience.MetricRetries:                             1,
		resilience.MetricRejections + " reason=circuit_open": 1,
		resilience.MetricFallbacks + " cause=failure":        1,
		resilience.MetricCircuitTransitions + " state=open":  1,
	} {
		if got[key] != n {
			t.Errorf("metric %q = %d, want %d (all: %v)", key, got[key], n, got)
		}
	}
}
