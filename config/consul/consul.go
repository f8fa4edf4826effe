package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/config"
)

// ErrInvalidConfig is wrapped by the error New returns when its settings
// are invalid; the message names the field.
var ErrInvalidConfig = errors.New("consul config source: invalid settings")

// Defaults of Config.
const (
	DefaultWaitTime    = 5 * time.Minute
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultLoadTimeout = 10 * time.Second
	maxWaitTime        = 10 * time.Minute // Consul's own cap
)

// Config describes a Consul KV source. The zero value is not valid:
// Prefix is required.
type Config struct {
	// Prefix is the KV prefix that holds the configuration, such as
	// "config/orders/"; a "/" is added when it does not end with one. The
	// key "config/orders/db/pool/max" is the config key "db.pool.max".
	// Keys ending in "/" (folders) are ignored.
	Prefix string

	// Consul is the client's configuration: address, datacenter, ACL
	// token, TLS. It is used for every request, the blocking queries
	// included. Nil: api.DefaultConfig(), which reads CONSUL_HTTP_ADDR,
	// CONSUL_HTTP_TOKEN, CONSUL_CACERT and the other CONSUL_ variables.
	// Ignored when WithClient is given.
	Consul *api.Config

	// WaitTime bounds one blocking query; Consul answers at the latest
	// after it (plus a little jitter) even without a change. Default
	// DefaultWaitTime (5m); at most 10m.
	WaitTime time.Duration

	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// query: it starts at MinBackoff and doubles up to MaxBackoff, with
	// jitter. Defaults DefaultMinBackoff (100ms) and DefaultMaxBackoff
	// (10s).
	MinBackoff, MaxBackoff time.Duration

	// LoadTimeout bounds Load when its context has no deadline. Default
	// DefaultLoadTimeout (10s).
	LoadTimeout time.Duration
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
// on the prefix, resets its index when Consul's goes backwards or after an
// error (a restarted agent), retries with backoff and jitter, and reports
// itself stale while Consul cannot be reached; the configuration then
// keeps the last good keys. A missing prefix is an empty layer.
//
// Source is safe for concurrent use, but Watch must not run twice at once.
type Source struct {
	kv     *api.KV
	prefix string
	wait   time.Duration
	minB   time.Duration
	maxB   time.Duration
	loadTO time.Duration
	log    *slog.Logger
	errs   metric.Int64Counter
	attrs  metric.MeasurementOption

	index atomic.Uint64 // Consul index of the last answer
	stale atomic.Bool
}

var _ config.Source = (*Source)(nil)

// New returns a Source for cfg. Invalid settings fail with an error
// wrapping ErrInvalidConfig that names the field.
func New(cfg Config, opts ...Option) (*Source, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	prefix := strings.TrimPrefix(cfg.Prefix, "/")
	if prefix == "" {
		return nil, fmt.Errorf("%w: Config.Prefix is empty", ErrInvalidConfig)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s := &Source{
		prefix: prefix,
		wait:   orDefault(cfg.WaitTime, DefaultWaitTime),
		minB:   orDefault(cfg.MinBackoff, DefaultMinBackoff),
		maxB:   orDefault(cfg.MaxBackoff, DefaultMaxBackoff),
		loadTO: orDefault(cfg.LoadTimeout, DefaultLoadTimeout),
		log:    o.logger,
	}
	switch {
	case cfg.WaitTime < 0 || cfg.WaitTime > maxWaitTime:
		return nil, fmt.Errorf("%w: Config.WaitTime %v is outside (0, 10m]", ErrInvalidConfig, cfg.WaitTime)
	case cfg.MinBackoff < 0:
		return nil, fmt.Errorf("%w: Config.MinBackoff %v is negative", ErrInvalidConfig, cfg.MinBackoff)
	case s.maxB < s.minB:
		return nil, fmt.Errorf("%w: Config.MaxBackoff %v is below MinBackoff %v", ErrInvalidConfig, s.maxB, s.minB)
	case cfg.LoadTimeout < 0:
		return nil, fmt.Errorf("%w: Config.LoadTimeout %v is negative", ErrInvalidConfig, cfg.LoadTimeout)
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
			return nil, fmt.Errorf("%w: Config.Consul: %v", ErrInvalidConfig, err)
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
	data, idx, err := s.list(ctx, 0)
	if err != nil {
		return nil, err
	}
	s.index.Store(idx)
	return data, nil
}

// list runs one query, blocking when index > 0.
func (s *Source) list(ctx context.Context, index uint64) (map[string]any, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: s.wait}).WithContext(ctx)
	pairs, meta, err := s.kv.List(s.prefix, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul: list %q: %w", s.prefix, err)
	}
	data := make(map[string]any, len(pairs))
	for _, p := range pairs {
		k := strings.TrimPrefix(p.Key, s.prefix)
		if k == "" || strings.HasSuffix(k, "/") {
			continue
		}
		data[strings.ReplaceAll(k, "/", config.Delim)] = string(p.Value)
	}
	return data, meta.LastIndex, nil
}

// Watch follows the keys under the prefix with blocking queries until ctx
// is done, emitting the whole layer after each change. See Source.
func (s *Source) Watch(ctx context.Context, emit func(config.Update)) error {
	index := s.index.Load()
	backoff := s.minB
	for {
		data, next, err := s.list(ctx, index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.errs.Add(ctx, 1, s.attrs)
			if !s.stale.Swap(true) {
				s.log.Warn("consul config source unreachable; keeping the last good keys", "prefix", s.prefix, "err", err)
				emit(config.Update{Stale: true, Err: err})
			}
			// Whatever comes back may have lost or changed its state (a
			// restarted agent starts its index again): read afresh.
			index = 0
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, s.maxB)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}
		backoff = s.minB
		recovered := s.stale.Swap(false)
		if recovered {
			s.log.Info("consul config source back", "prefix", s.prefix)
		}
		// When the index went backwards (next < index), the answer is
		// still the current state: take it, and block on its index.
		if next == index && !recovered {
			continue // the wait ran out without a change
		}
		emit(config.Update{Data: data})
		// An index of 0 would make the next query return at once.
		index = max(next, 1)
		s.index.Store(index)
	}
}
