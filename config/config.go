package config

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/json"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// Delim separates the parts of a config key: "db.pool.max".
const Delim = "."

// Layers says where the configuration comes from. Each layer overrides the
// ones before it, in this order (lowest first):
//
//  1. Defaults
//  2. File
//  3. Sources, in order (for example Consul KV)
//  4. environment variables starting with EnvPrefix
//
// A key that is missing from a layer falls through to the layers below it,
// so defaults fill the gaps. The zero Layers is valid and empty. Layers is
// plain data; Load does not change or keep it, so one value may be shared.
type Layers struct {
	// Defaults is a struct or a map[string]any (nested maps or dotted
	// keys) whose values may be structs. A struct's keys are its fields'
	// `yaml` tags, as Snapshot.Unmarshal reads them (nested structs
	// become nested keys, ",inline" fields are read at their parent's
	// level, "-" fields are left out, and so are nil pointers and
	// omitempty fields holding their zero value), so
	//
	//	Defaults: map[string]any{"resilience": resilience.Config{…}}
	//
	// gives the keys resilience.default.retry.max_attempts and so on.
	// Nil: no defaults.
	Defaults any

	// File is the path of a YAML, JSON or TOML file, watched by
	// Config.Watch: a change, including an editor's write to a temporary
	// file renamed over it, is reloaded; a malformed file is rejected and
	// the last good content stays. Empty: no file.
	File string
	// FileFormat is "yaml", "json" or "toml". Empty: taken from File's
	// extension (.yaml, .yml, .json, .toml).
	FileFormat string
	// FileOptional makes a missing file an empty layer instead of an
	// error. Default false: Load fails when File does not exist.
	FileOptional bool

	// Sources are live layers above the file, lowest first.
	Sources []Source

	// EnvPrefix selects the environment variables that form the top
	// layer, read once by Load. The rest of a variable's name, lower-case,
	// with "_" read as "." and "__" as a literal "_", is the key:
	// with EnvPrefix "ORDERS_", ORDERS_DB_POOL_MAX=20 sets db.pool.max and
	// ORDERS_HTTP__ADDR sets http_addr. Empty: no environment layer.
	EnvPrefix string
}

// Option changes how Load builds a Config, for settings only code can
// give.
type Option func(*options)

type options struct {
	logger  *slog.Logger
	meter   metric.MeterProvider
	onError func(error)
	environ func() []string
}

// WithLogger logs loads, changes, rejections and stale sources to l.
// Nil (the default) is silent.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider sets where metrics go. Default: the global
// OpenTelemetry meter provider (a no-op unless the application sets one).
//
// Metrics: vitamin.config.updates (layer updates applied, by layer) and
// vitamin.config.rejections (changes rejected, by key or layer).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithErrorHandler calls fn with every rejected change (a *RejectedError)
// and every failure of a source while watching (a *SourceError). fn is
// called from the goroutine that applies changes, or from the one creating
// a property whose configured value is invalid; it must not block.
func WithErrorHandler(fn func(error)) Option { return func(o *options) { o.onError = fn } }

// WithEnviron reads the environment layer from fn (in the form of
// os.Environ) instead of the process environment.
func WithEnviron(fn func() []string) Option { return func(o *options) { o.environ = fn } }

// Config is the live configuration: the current Snapshot of all layers,
// and the properties and bindings that follow it. It is safe for
// concurrent use.
type Config struct {
	layers []*layer
	snap   atomic.Pointer[Snapshot]

	applyMu sync.Mutex // serializes applying updates and running callbacks
	mu      sync.Mutex // guards props
	props   []refresher

	watching atomic.Bool

	rejMu    sync.Mutex
	rejected map[string]Rejection // by rejectionKey

	log         *slog.Logger
	onError     func(error)
	updates     metric.Int64Counter
	rejections  metric.Int64Counter
	snapVersion uint64 // guarded by applyMu
}

type layer struct {
	name  string
	src   Source         // nil for a static layer
	data  map[string]any // flat; guarded by applyMu after Load
	stale atomic.Bool
}

type refresher interface {
	// refresh computes the property's value from s and stores it; it
	// returns the callbacks to run, or nil. Called with applyMu held.
	refresh(s *Snapshot) func()
}

// Load reads every configured layer once and returns the Config. A layer
// that cannot be read fails Load with a *SourceError; invalid settings
// fail it with a *FieldError matching ErrInvalidConfig that names the
// field. Call Watch to follow changes.
func Load(ctx context.Context, l Layers, opts ...Option) (*Config, error) {
	o := options{environ: nil}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Config{log: o.logger, onError: o.onError}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	mp := o.meter
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter("github.com/vitamin-go/vitamin/config")
	var err error
	if c.updates, err = meter.Int64Counter("vitamin.config.updates",
		metric.WithDescription("Layer updates applied to the configuration."),
		metric.WithUnit("{update}")); err != nil {
		return nil, fmt.Errorf("config: metric: %w", err)
	}
	if c.rejections, err = meter.Int64Counter("vitamin.config.rejections",
		metric.WithDescription("Configuration changes rejected because they did not parse or validate."),
		metric.WithUnit("{change}")); err != nil {
		return nil, fmt.Errorf("config: metric: %w", err)
	}

	if l.Defaults != nil {
		d, err := defaultsMap(l.Defaults)
		if err != nil {
			return nil, err
		}
		c.layers = append(c.layers, &layer{name: "defaults", data: d})
	}
	if l.File != "" {
		fs, err := newFileSource(l.File, l.FileFormat, l.FileOptional, c.log)
		if err != nil {
			return nil, err
		}
		c.layers = append(c.layers, &layer{name: fs.String(), src: fs})
	} else if l.FileFormat != "" {
		return nil, fielderr.New(ErrInvalidConfig, "Layers.FileFormat", l.FileFormat, "given without Layers.File", nil)
	}
	for i, s := range l.Sources {
		if s == nil {
			return nil, fielderr.Errorf(ErrInvalidConfig, fmt.Sprintf("Layers.Sources[%d]", i), "nil")
		}
		name := fmt.Sprintf("source[%d]", i)
		if n, ok := s.(fmt.Stringer); ok {
			name = n.String()
		}
		c.layers = append(c.layers, &layer{name: name, src: s})
	}
	if l.EnvPrefix != "" {
		p := env.Provider(Delim, env.Opt{
			Prefix:        l.EnvPrefix,
			EnvironFunc:   o.environ,
			TransformFunc: envKey(l.EnvPrefix),
		})
		m, err := p.Read()
		if err != nil {
			return nil, &SourceError{Layer: "env:" + l.EnvPrefix, Err: err}
		}
		c.layers = append(c.layers, &layer{name: "env:" + l.EnvPrefix, data: flatten(m)})
	}

	for _, ly := range c.layers {
		if ly.src == nil {
			continue
		}
		m, err := ly.src.Load(ctx)
		if err != nil {
			return nil, &SourceError{Layer: ly.name, Err: err}
		}
		ly.data = flatten(m)
	}
	s, err := c.build()
	if err != nil {
		return nil, err
	}
	c.snap.Store(s)
	c.log.Info("config loaded", "layers", len(c.layers), "keys", len(s.flat))
	return c, nil
}

// envKey maps PREFIX_DB_POOL__MAX to db.pool_max.
func envKey(prefix string) func(k, v string) (string, any) {
	return func(k, v string) (string, any) {
		k = strings.ToLower(strings.TrimPrefix(k, prefix))
		k = strings.ReplaceAll(k, "__", "\x00")
		k = strings.ReplaceAll(k, "_", Delim)
		k = strings.ReplaceAll(k, "\x00", "_")
		k = strings.Trim(k, Delim)
		return k, v
	}
}

func defaultsMap(d any) (map[string]any, error) {
	v := reflect.ValueOf(d)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct && (v.Kind() != reflect.Map || v.Type().Key().Kind() != reflect.String) {
		return nil, fielderr.Errorf(ErrInvalidConfig, "Layers.Defaults", "a %T; want a struct or a map[string]any", d)
	}
	m, _ := toMap(v)
	return flatten(m.(map[string]any)), nil
}

func parserFor(path, format string) (koanf.Parser, error) {
	f := strings.ToLower(format)
	field := "Layers.FileFormat"
	if f == "" {
		f = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
		field = "Layers.File"
	}
	switch f {
	case "yaml", "yml":
		return yaml.Parser(), nil
	case "json":
		return json.Parser(), nil
	case "toml":
		return toml.Parser(), nil
	}
	return nil, fielderr.New(ErrInvalidConfig, field, f, "unknown format (want yaml, json or toml)", nil)
}

// flatten returns a flat copy of m, with nested maps turned into dotted
// keys.
func flatten(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	m = maps.Copy(m)
	maps.IntfaceKeysToStrings(m)
	flat, _ := maps.Flatten(m, nil, Delim)
	return flat
}

// build merges the layers into a new snapshot. Called by Load and with
// applyMu held.
func (c *Config) build() (*Snapshot, error) {
	k := koanf.New(Delim)
	for _, ly := range c.layers {
		if err := k.Load(confmap.Provider(ly.data, Delim), nil); err != nil {
			return nil, &SourceError{Layer: ly.name, Err: err}
		}
	}
	c.snapVersion++
	return newSnapshot(k, c.snapVersion), nil
}

// Snapshot returns the current snapshot: all layers merged, never changed
// afterwards.
func (c *Config) Snapshot() *Snapshot { return c.snap.Load() }

// Stale reports whether a source reports that it cannot reach its backend,
// so that the configuration may be out of date.
func (c *Config) Stale() bool {
	for _, ly := range c.layers {
		if ly.stale.Load() {
			return true
		}
	}
	return false
}

// Watch follows the live layers (the file and the Sources) until ctx is
// done, applying each change as a new snapshot. It blocks, so run it in a
// goroutine; it returns once every watcher has stopped, with nil after ctx
// is done, or ErrWatching when another Watch is running. A source that
// fails is reported to the error handler and logged; the others go on.
func (c *Config) Watch(ctx context.Context) error {
	if !c.watching.CompareAndSwap(false, true) {
		return ErrWatching
	}
	defer c.watching.Store(false)
	var wg sync.WaitGroup
	for _, ly := range c.layers {
		if ly.src == nil {
			continue
		}
		wg.Go(func() {
			err := ly.src.Watch(ctx, func(u Update) { c.apply(ly, u) })
			if err != nil && ctx.Err() == nil {
				err = &SourceError{Layer: ly.name, Err: err}
				c.log.Error("config source stopped", "layer", ly.name, "err", err)
				c.report(err)
			}
		})
	}
	wg.Wait()
	return nil
}

func (c *Config) report(err error) {
	if c.onError != nil {
		c.onError(err)
	}
}

// reject logs, counts, keeps and reports a rejected change.
func (c *Config) reject(e *RejectedError) {
	ctx := context.Background()
	r := newRejection(e)
	if e.Key != "" {
		attrs := []any{"key", r.Key}
		if r.Key != e.Key {
			attrs = append(attrs, "prefix", e.Key)
		}
		if _, section := e.Value.(map[string]any); !section {
			attrs = append(attrs, "value", e.Value)
		}
		c.log.Warn("config change rejected", append(attrs, "reason", e.Err)...)
		c.rejections.Add(ctx, 1, metric.WithAttributes(attribute.String("key", e.Key)))
	} else {
		c.log.Warn("config update rejected", "layer", e.Layer, "reason", e.Err)
		c.rejections.Add(ctx, 1, metric.WithAttributes(attribute.String("layer", e.Layer)))
	}
	c.rejMu.Lock()
	if c.rejected == nil {
		c.rejected = map[string]Rejection{}
	}
	c.rejected[rejectionKey(e.Key, e.Layer)] = r
	c.rejMu.Unlock()
	c.report(e)
}

// accepted clears the rejection kept for a property's key or prefix
// (layer empty), or for a layer (key empty).
func (c *Config) accepted(key, layer string) {
	c.rejMu.Lock()
	delete(c.rejected, rejectionKey(key, layer))
	c.rejMu.Unlock()
}

// apply applies one update of layer ly.
func (c *Config) apply(ly *layer, u Update) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	switch {
	case u.Stale:
		if !ly.stale.Swap(true) {
			c.log.Warn("config source stale; keeping its last good data", "layer", ly.name, "err", u.Err)
		}
		return
	case u.Err != nil:
		c.reject(&RejectedError{Layer: ly.name, Err: u.Err})
		return
	}
	if ly.stale.Swap(false) {
		c.log.Info("config source back", "layer", ly.name)
	}
	c.accepted("", ly.name) // the layer reads again
	flat := flatten(u.Data)
	if reflect.DeepEqual(flat, ly.data) {
		return
	}
	ly.data = flat
	s, err := c.build()
	if err != nil {
		c.reject(&RejectedError{Layer: ly.name, Err: err})
		return
	}
	c.snap.Store(s)
	c.updates.Add(context.Background(), 1, metric.WithAttributes(attribute.String("layer", ly.name)))
	c.log.Debug("config changed", "layer", ly.name, "version", s.version)

	c.mu.Lock()
	props := c.props[:len(c.props):len(c.props)]
	c.mu.Unlock()
	var fire []func()
	for _, p := range props {
		if f := p.refresh(s); f != nil {
			fire = append(fire, f)
		}
	}
	for _, f := range fire {
		f()
	}
}

// register adds a property: it computes its first value from the current
// snapshot and then follows changes.
func (c *Config) register(p refresher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.refresh(c.snap.Load())
	c.props = append(c.props, p)
}
