package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/internal/fielderr"
	"github.com/vitamin-go/vitamin/resilience"
)

// ErrInvalidConfig is matched (with errors.Is) by every error about a
// Config or an option that cannot be used; the concrete error is a
// *FieldError naming the field.
var ErrInvalidConfig = errors.New("admin: invalid configuration")

// FieldError names a bad field of Config, behind ErrInvalidConfig. It is
// the one field-error type of the module.
type FieldError = fielderr.Error

func invalid(field string, value any, reason string) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, nil)
}

// Defaults of Config.
const (
	DefaultAddr    = "127.0.0.1:9091"
	DefaultRefresh = 2 * time.Second
)

// TokenEnv is the environment variable that gives Config.Token when the
// file leaves it empty, so that the credential need not be written there.
const TokenEnv = "VITAMIN_ADMIN_TOKEN"

// Config is what a person writes about the admin listener. Keys are
// snake_case in yaml and json tags; the zero value of each field means its
// documented default. It is plain data.
type Config struct {
	// Disabled turns the admin listener off: package service then starts
	// neither it nor the automatic profiling and memory limit, and adds no
	// Prometheus reader to its telemetry.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// Addr is the "host:port" the admin listener binds. Default
	// "127.0.0.1:9091": loopback, reachable from the pod or host only;
	// port 0 picks a free port. Bind another address only behind a
	// network policy: the page shows the configuration, redacted.
	Addr string `yaml:"addr" json:"addr"`
	// Token is the credential that the actions (force a breaker open or
	// closed, clear an ejection) require, as "Authorization: Bearer
	// <token>" or the page's credential field. Default: the
	// VITAMIN_ADMIN_TOKEN environment variable; when both are empty, every
	// action is refused.
	Token string `yaml:"token" json:"token"`
	// Refresh is how often the page refreshes itself. Default 2s.
	Refresh time.Duration `yaml:"refresh" json:"refresh"`
	// Profiling configures the automatic profiles.
	Profiling Profiling `yaml:"profiling" json:"profiling"`
	// MemoryLimit sets GOMEMLIMIT from the container's memory limit.
	MemoryLimit MemoryLimit `yaml:"memory_limit" json:"memory_limit"`
}

// withDefaults returns c with its defaults, or the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return c, invalid("Admin.Addr", c.Addr, `must be "host:port"`)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return c, invalid("Admin.Addr", c.Addr, "port must be a number from 0 to 65535")
	}
	if c.Token == "" {
		c.Token = os.Getenv(TokenEnv)
	}
	switch {
	case c.Refresh < 0:
		return c, invalid("Admin.Refresh", c.Refresh, "must not be negative")
	case c.Refresh == 0:
		c.Refresh = DefaultRefresh
	}
	if c.Profiling, err = c.Profiling.withDefaults(); err != nil {
		return c, err
	}
	if c.MemoryLimit, err = c.MemoryLimit.withDefaults(); err != nil {
		return c, err
	}
	return c, nil
}

// Validate reports the first invalid field of c (after defaults) as a
// *FieldError matching ErrInvalidConfig.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// Build is what the page and the API say about the running binary.
type Build struct {
	Service   string `json:"service"`
	Instance  string `json:"instance,omitempty"`
	Version   string `json:"version,omitempty"`
	GoVersion string `json:"go_version"`
	Module    string `json:"module,omitempty"`
	// Revision and Time are the VCS revision and commit time the binary
	// was built from, when the Go toolchain recorded them.
	Revision string    `json:"revision,omitempty"`
	Modified bool      `json:"modified,omitempty"`
	Started  time.Time `json:"started"`
}

// Option configures a Server with what only code can give: the state to
// show. Options are applied once, by New.
type Option func(*options)

type options struct {
	policies []*resilience.Registry
	callers  *resilience.CallerLimiter
	clients  *client.Monitor
	cfg      *config.Config
	redact   []string
	metrics  *Metrics
	health   func() (bool, string)
	build    Build
	logger   *slog.Logger
	meter    metric.MeterProvider
}

// WithPolicies shows the breakers and retry budgets of r; breaker actions
// apply to it. It may be given more than once.
func WithPolicies(r *resilience.Registry) Option {
	return func(o *options) { o.policies = append(o.policies, r) }
}

// WithCallers shows the callers l has seen, with their rate and limits.
func WithCallers(l *resilience.CallerLimiter) Option { return func(o *options) { o.callers = l } }

// WithClients shows the downstream services of the clients made with
// client.WithMonitor(m); ejection actions apply to them.
func WithClients(m *client.Monitor) Option { return func(o *options) { o.clients = m } }

// WithConfig shows c: its sources, its rejected changes and its current
// values, with secrets redacted (see WithRedact).
func WithConfig(c *config.Config) Option { return func(o *options) { o.cfg = c } }

// WithRedact adds words to those that mark a configuration key as secret:
// a key any of whose dot-separated parts contains one (case-insensitive)
// is shown as "[redacted]". Always redacted: password, passwd, secret,
// token, credential, private, apikey, api_key, dsn.
func WithRedact(words ...string) Option {
	return func(o *options) { o.redact = append(o.redact, words...) }
}

// WithMetrics serves m on /metrics, and shows the consumers' counts from it.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithHealth reports readiness on /readyz and /health, and on the page:
// ready returns whether the service is ready and why not.
func WithHealth(ready func() (bool, string)) Option { return func(o *options) { o.health = ready } }

// WithBuild names the service, instance and version on the page; the Go
// build information is added.
func WithBuild(service, instance, version string) Option {
	return func(o *options) { o.build.Service, o.build.Instance, o.build.Version = service, instance, version }
}

// WithLogger logs actions, captures and what the profiler decided. Nil is
// silent (the default).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider counts profile captures and actions with mp
// (MetricProfiles, MetricActions). Default: not counted.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.meter = mp } }

// Server is the admin surface of one service: the health endpoints,
// /metrics, pprof, the state page and its JSON API, the actions and the
// automatic profiler. Handler serves it on a listener of the caller's;
// Start binds Config.Addr. It is safe for concurrent use.
type Server struct {
	cfg   Config
	o     options
	log   *slog.Logger
	h     http.Handler
	prof  *Profiler
	inst  instruments
	rates callerRates

	mu     sync.Mutex
	ln     net.Listener
	srv    *http.Server
	served chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
}

// New checks cfg (an invalid field fails with a *FieldError) and returns a
// Server. It starts nothing: Start does, or serve Handler yourself.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg}
	for _, opt := range opts {
		opt(&s.o)
	}
	s.log = s.o.logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.o.meter == nil {
		s.o.meter = noop.NewMeterProvider()
	}
	s.o.build = buildInfo(s.o.build)
	s.inst = newInstruments(s.o.meter)
	s.prof = newProfiler(cfg.Profiling, s.log, s.inst)
	s.h = s.routes()
	return s, nil
}

// Handler returns the admin surface as an http.Handler.
func (s *Server) Handler() http.Handler { return s.h }

// Profiler returns the automatic profiler, which Start runs.
func (s *Server) Profiler() *Profiler { return s.prof }

// Start binds Config.Addr, serves Handler on it, applies the memory limit
// and starts the profiler (unless they are disabled). It returns an error
// naming Admin.Addr when the address cannot be bound. Close stops them.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin: Start called twice")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: Admin.Addr %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("admin: server stopped", "err", err)
		}
	}()
	applyMemoryLimit(s.cfg.MemoryLimit, s.cfg.Profiling.CgroupRoot, s.log)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.prof.Run(pctx)
	}()
	s.log.Info("admin: listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address Start bound, or "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the profiler (a capture in progress ends) and the listener,
// waiting for requests in flight until ctx ends. It does nothing before
// Start.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	s.stop()
	<-s.done
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.served
	s.srv = nil
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
	ready := func(w http.ResponseWriter, _ *http.Request) {
		ok, why := s.ready()
		if ok {
			text(w, http.StatusOK, why)
		} else {
			text(w, http.StatusServiceUnavailable, why)
		}
	}
	mux.HandleFunc("GET /readyz", ready)
	mux.HandleFunc("GET /health", ready)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET "+PathState, s.serveState)
	mux.HandleFunc("GET /api/v1/profiles/{name}", s.serveProfile)
	mux.HandleFunc("GET /{$}", s.servePage)
	actions := http.NewServeMux()
	actions.HandleFunc("POST /api/v1/breakers/{policy}/{action}", s.breakerAction)
	actions.HandleFunc("POST /api/v1/services/{service}/instances/{id}/clear-ejection", s.clearEjection)
	// Cross-origin browser requests are refused before the credential
	// is even looked at (CSRF); requests without Sec-Fetch-Site or
	// Origin (curl, vitamin status) pass to the credential check.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.refused(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	mux.Handle("POST /api/", cop.Handler(s.authorized(actions)))
	return headers(mux)
}

func (s *Server) ready() (bool, string) {
	if s.o.health == nil {
		return true, "ok"
	}
	return s.o.health()
}

// headers forbids framing (clickjacking of the actions) and caching.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, body)
}
