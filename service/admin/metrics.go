package admin

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metric names of this package, recorded through the OpenTelemetry API
// (see docs/metrics.md for all of Vitamin's).
const (
	// MetricProfiles counts automatic profile captures, with the
	// attribute "reason" ("cpu" or "memory").
	MetricProfiles = "vitamin.admin.profiles"
	// MetricActions counts operator actions, with the attributes "action"
	// and "outcome" ("done", "refused", "failed").
	MetricActions = "vitamin.admin.actions"
)

// Metrics is the Prometheus side of a service's OpenTelemetry metrics:
// Reader is a metric reader to give the meter provider
// (tracing.WithMetricReader), and Handler serves what it reads, with the
// Go runtime's and the process's metrics, in the Prometheus exposition
// format. The names follow the exporter's translation: dots become
// underscores, counters end in _total, units are appended
// (vitamin.messaging.handler.duration, in s, is
// vitamin_messaging_handler_duration_seconds).
//
// Metrics is safe for concurrent use.
type Metrics struct {
	otel   *prometheus.Registry // what the reader reads, for the state's consumer counts
	all    prometheus.Gatherers // otel and the runtime's, for /metrics
	reader sdkmetric.Reader
}

// NewMetrics returns a Metrics with its own Prometheus registries.
func NewMetrics() (*Metrics, error) {
	otelReg, runtime := prometheus.NewRegistry(), prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(otelReg))
	if err != nil {
		return nil, err
	}
	if err := runtime.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := runtime.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	return &Metrics{otel: otelReg, all: prometheus.Gatherers{otelReg, runtime}, reader: exp}, nil
}

// Reader returns the OpenTelemetry metric reader to register with the
// meter provider.
func (m *Metrics) Reader() sdkmetric.Reader { return m.reader }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.all, promhttp.HandlerOpts{})
}

func (s *Server) metricsHandler() http.Handler {
	if s.o.metrics == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			text(w, http.StatusNotFound, "admin: no metrics: the service has no metric reader (admin.WithMetrics)")
		})
	}
	return s.o.metrics.Handler()
}

type instruments struct {
	profiles, actions metric.Int64Counter
}

func newInstruments(mp metric.MeterProvider) instruments {
	m := mp.Meter("github.com/vitamin-go/vitamin/service/admin")
	var in instruments
	// Constant, valid names: creation does not fail, and the API returns
	// a usable no-op instrument anyway.
	in.profiles, _ = m.Int64Counter(MetricProfiles, metric.WithDescription("Automatic profile captures, by reason."))
	in.actions, _ = m.Int64Counter(MetricActions, metric.WithDescription("Operator actions on the admin listener, by action and outcome."))
	return in
}

func (in instruments) action(action, outcome string) {
	in.actions.Add(context.Background(), 1, metric.WithAttributes(attrAction.String(action), attrOutcome.String(outcome)))
}
