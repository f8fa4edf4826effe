package vitamintest

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Buffer is an io.Writer that keeps what it is given, for logs written from
// several goroutines and read by the test. It is safe for concurrent use.
type Buffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Metrics is an OpenTelemetry meter provider whose measurements a test
// reads back. It is safe for concurrent use.
type Metrics struct {
	// Provider is the meter provider to give to the code under test.
	Provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
}

// NewMetrics returns a Metrics that is shut down when the test ends.
func NewMetrics(t testing.TB) *Metrics {
	r := sdkmetric.NewManualReader()
	m := &Metrics{Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), reader: r}
	t.Cleanup(func() { _ = m.Provider.Shutdown(context.Background()) })
	return m
}

// Sum returns the total of the int64 counter name over the data points
// whose attributes include all of attrs, or, for a histogram, the number
// of values recorded there. A metric never recorded sums to 0.
func (m *Metrics) Sum(t testing.TB, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("vitamintest: collect metrics: %v", err)
	}
	has := func(set attribute.Set) bool {
		for _, kv := range attrs {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != name {
				continue
			}
			switch d := md.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes) {
						n += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if has(p.Attributes) {
						n += int64(p.Count)
					}
				}
			}
		}
	}
	return n
}
