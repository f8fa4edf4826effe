package consul

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/consulquery"
	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// Defaults of Config.
const (
	DefaultWaitTime    = 5 * time.Minute
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultLoadTimeout = 10 * time.Second
)

// Config describes a Consul KV source. The zero value is not valid:
// Prefix is required. It is plain data, safe to copy; all but Consul can
// be written in a file (yaml and json keys in snake_case).
type Config struct {
	// Prefix is the KV prefix that holds the configuration, such as
	// "config/orders/"; a "/" is added when it does not end with one. The
	// key "config/orders/db/pool/max" is the config key "db.pool.max".
	// Keys ending in "/" (folders) are ignored.
	Prefix string `yaml:"prefix" json:"prefix"`

	// Consul is the client's configuration: address, datacenter, ACL
	// token, TLS. It is used for every request, the blocking queries
	// included. Nil: api.DefaultConfig(), which reads CONSUL_HTTP_ADDR,
	// CONSUL_HTTP_TOKEN, CONSUL_CACERT and the other CONSUL_ variables.
	// Ignored when WithClient is given.
	Consul *api.Config `yaml:"-" json:"-"`

	// WaitTime bounds one blocking query; Consul answers at the latest
	// after it (plus a little jitter) even without a change. Default
	// DefaultWaitTime (5m); at most 10m.
	WaitTime time.Duration `yaml:"wait_time" json:"wait_time"`

	// Backoff is the wait before retrying a failed query; it doubles with
	// each failure in a row up to MaxBackoff, with jitter (between half
	// and all of it). Default DefaultBackoff (100ms).
	Backoff time.Duration `yaml:"backoff" json:"backoff"`
	// MaxBackoff caps the wait before retrying. Default DefaultMaxBackoff
	// (10s), or Backoff if that is longer.
	MaxBackoff time.Duration `yaml:"max_backoff" json:"max_backoff"`

	// LoadTimeout bounds Load when its context has no deadline. Default
	// DefaultLoadTimeout (10s).
	LoadTimeout time.Duration `yaml:"load_timeout" json:"load_timeout"`
}

// Option changes how New builds a Source, for settings only code can give.
type Option func(*options)

type options struct {
	client *api.Client
	logger *slog.Logger
	meter  metric.MeterProvider
}

// WithClient uses an existing client (with its token and TLS settings)
// instead of making one from Config.Consul.
func WithClient(c *api.Client) Option { return func(o *options) { o.client = c } }

// WithLogger logs failed queries and recoveries to l. Nil (the default) is
// silent.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider sets where metrics go. Default: the global
// OpenTelemetry meter provider (a no-op unless the application sets one).
// Metric: vitamin.config.consul.errors (failed queries).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// Source is a live configuration layer over the Consul KV keys under a
// prefix, for config.Layers.Sources. It follows them with blocking queries
// on the prefix, starts over from index 0 when Consul's index goes
// backwards or after an error (a restarted agent), retries with backoff
// and jitter, and reports itself stale while Consul cannot be reached; the
// configuration then keeps the last good keys. A missing prefix is an
// empty layer.
//
// Source is safe for concurrent use, but Watch must not run twice at once.
type Source struct {
	kv     *api.KV
	prefix string
	wait   time.Duration
	back   backoff.Backoff
	loadTO time.Duration
	log    *slog.Logger
	errs   metric.Int64Counter
	attrs  metric.MeasurementOption

	index atomic.Uint64 // Consul index of the last answer
	stale atomic.Bool
}

var _ config.Source = (*Source)(nil)

// New returns a Source for cfg. Invalid settings fail with a
// [*config.FieldError] matching [config.ErrInvalidConfig] that names the
// field.
func New(cfg Config, opts ...Option) (*Source, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	prefix := strings.TrimPrefix(cfg.Prefix, "/")
	if prefix == "" {
		return nil, fielderr.Errorf(config.ErrInvalidConfig, "Config.Prefix", "empty")
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	initial := orDefault(cfg.Backoff, DefaultBackoff)
	s := &Source{
		prefix: prefix,
		wait:   orDefault(cfg.WaitTime, DefaultWaitTime),
		back:   backoff.Backoff{Initial: initial, Max: orDefault(cfg.MaxBackoff, max(DefaultMaxBackoff, initial))},
		loadTO: orDefault(cfg.LoadTimeout, DefaultLoadTimeout),
		log:    o.logger,
	}
	switch {
	case cfg.WaitTime < 0 || cfg.WaitTime > consulquery.MaxWaitTime:
		return nil, fielderr.New(config.ErrInvalidConfig, "Config.WaitTime", cfg.WaitTime, "not in (0, 10m]", nil)
	case cfg.Backoff < 0:
		return nil, fielderr.New(config.ErrInvalidConfig, "Config.Backoff", cfg.Backoff, "negative", nil)
	case s.back.Max < s.back.Initial:
		return nil, fielderr.New(config.ErrInvalidConfig, "Config.MaxBackoff", cfg.MaxBackoff,
			fmt.Sprintf("less than Backoff %v", s.back.Initial), nil)
	case cfg.LoadTimeout < 0:
		return nil, fielderr.New(config.ErrInvalidConfig, "Config.LoadTimeout", cfg.LoadTimeout, "negative", nil)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	client := o.client
	if client == nil {
		ac := cfg.Consul
		if ac == nil {
			ac = api.DefaultConfig()
		}
		var err error
		if client, err = api.NewClient(ac); err != nil {
			return nil, fielderr.New(config.ErrInvalidConfig, "Config.Consul", nil, "cannot make a client", err)
		}
	}
	s.kv = client.KV()
	mp := o.meter
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	var err error
	s.errs, err = mp.Meter("github.com/vitamin-go/vitamin/config/consul").Int64Counter(
		"vitamin.config.consul.errors",
		metric.WithDescription("Failed Consul KV queries of the configuration source."),
		metric.WithUnit("{query}"))
	if err != nil {
		return nil, fmt.Errorf("consul config source: metric: %w", err)
	}
	s.attrs = metric.WithAttributes(attribute.String("prefix", prefix))
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// String names the layer: "consul:" and the prefix.
func (s *Source) String() string { return "consul:" + s.prefix }

// Stale reports whether the last query failed: the layer may be out of
// date.
func (s *Source) Stale() bool { return s.stale.Load() }

// Load reads the keys under the prefix once. It adds LoadTimeout when ctx
// has no deadline.
func (s *Source) Load(ctx context.Context) (map[string]any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.loadTO)
		defer cancel()
	}
	data, meta, err := s.list(ctx, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.index.Store(meta.LastIndex)
	return data, nil
}

// list runs one query on the prefix with q, which carries ctx.
func (s *Source) list(_ context.Context, q *api.QueryOptions) (map[string]any, *api.QueryMeta, error) {
	pairs, meta, err := s.kv.List(s.prefix, q)
	if err != nil {
		return nil, nil, fmt.Errorf("consul: list %q: %w", s.prefix, err)
	}
	data := make(map[string]any, len(pairs))
	for _, p := range pairs {
		k := strings.TrimPrefix(p.Key, s.prefix)
		if k == "" || strings.HasSuffix(k, "/") {
			continue
		}
		data[strings.ReplaceAll(k, "/", config.Delim)] = string(p.Value)
	}
	return data, meta, nil
}

// Watch follows the keys under the prefix with blocking queries until ctx
// is done, emitting the whole layer after each change. See Source.
func (s *Source) Watch(ctx context.Context, emit func(config.Update)) error {
	loop := consulquery.New(consulquery.Config{
		WaitTime:   s.wait,
		Backoff:    s.back,
		StartIndex: s.index.Load(),
		What:       "the configuration's KV prefix",
		Logger:     s.log.With("prefix", s.prefix),
	}, s.list)
	for {
		r, ok := loop.Next(ctx)
		if !ok {
			return nil
		}
		s.index.Store(loop.Index())
		if r.Err != nil {
			s.errs.Add(ctx, 1, s.attrs)
			s.stale.Store(true)
			if r.Failures == 1 {
				emit(config.Update{Stale: true, Err: r.Err})
			}
			continue
		}
		s.stale.Store(false)
		if r.Changed || r.Recovered {
			emit(config.Update{Data: r.Answer})
		}
	}
}
