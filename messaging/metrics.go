package messaging

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/vitamin-go/vitamin/messaging"

type consumerMetrics struct {
	// The stream and durable attributes, built once: passing them as
	// slices avoids an allocation per measurement.
	addOpts     []metric.AddOption
	recordOpts  []metric.RecordOption
	processed   metric.Int64Counter
	duplicates  metric.Int64Counter
	retries     metric.Int64Counter
	deadLetters metric.Int64Counter
	latency     metric.Float64Histogram
	inFlight    metric.Int64UpDownCounter
}

func newConsumerMetrics(p metric.MeterProvider, stream, durable string) (*consumerMetrics, error) {
	m := p.Meter(instrumentation)
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attribute.String("messaging.destination.name", stream),
		attribute.String("messaging.consumer.group.name", durable),
	))
	cm := &consumerMetrics{addOpts: []metric.AddOption{attrs}, recordOpts: []metric.RecordOption{attrs}}
	var err error
	if cm.processed, err = m.Int64Counter("vitamin.messaging.processed",
		metric.WithDescription("Messages whose handler succeeded and that were acknowledged.")); err != nil {
		return nil, err
	}
	if cm.duplicates, err = m.Int64Counter("vitamin.messaging.duplicates",
		metric.WithDescription("Deliveries of already processed messages, acknowledged without running the handler.")); err != nil {
		return nil, err
	}
	if cm.retries, err = m.Int64Counter("vitamin.messaging.retries",
		metric.WithDescription("Deliveries negatively acknowledged for redelivery with backoff.")); err != nil {
		return nil, err
	}
	if cm.deadLetters, err = m.Int64Counter("vitamin.messaging.dead_lettered",
		metric.WithDescription("Messages copied to the dead-letter subject and terminated.")); err != nil {
		return nil, err
	}
	if cm.latency, err = m.Float64Histogram("vitamin.messaging.handler.duration",
		metric.WithUnit("s"), metric.WithDescription("Time spent in the handler.")); err != nil {
		return nil, err
	}
	if cm.inFlight, err = m.Int64UpDownCounter("vitamin.messaging.in_flight",
		metric.WithDescription("Messages whose handler is running.")); err != nil {
		return nil, err
	}
	return cm, nil
}
