package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/fielderr"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinggrpc"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// Service is one running instance of a domain service: its servers,
// health, registration, consumers, resources and telemetry, started and
// stopped in order by Run. Build it with New, run it once. Its methods are
// safe for concurrent use, except Add, which comes before Run.
type Service struct {
	cfg       Config
	o         options
	log       *slog.Logger
	consul    *api.Client
	ownedConn *http.Transport // the Consul client's transport, when New made it
	registrar discovery.Registrar
	registry  string // what registrar is, for messages
	ran       atomic.Bool

	mu                            sync.Mutex
	httpAddr, grpcAddr, adminAddr string
}

// New checks cfg (an invalid field fails with a *FieldError matching
// ErrInvalidConfig), fills in its defaults and applies opts. It starts
// nothing: Run does.
func New(cfg Config, opts ...Option) (*Service, error) {
	s := &Service{o: options{signals: defaultSignals}}
	for _, opt := range opts {
		opt(&s.o)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := s.o.validate(); err != nil {
		return nil, err
	}
	if cfg.AdvertiseAddress == "" {
		cfg.AdvertiseAddress = advertise(s.primaryAddr(cfg))
	}
	if cfg.InstanceID == "" {
		if port := portOf(s.primaryAddr(cfg)); port != 0 {
			cfg.InstanceID = fmt.Sprintf("%s-%s-%d", cfg.Name, cfg.AdvertiseAddress, port)
		}
	}
	s.cfg = cfg

	switch {
	case !s.o.loggerSet:
		s.log = slog.New(tracing.NewLogHandler(slog.NewTextHandler(os.Stderr, nil)))
	case s.o.logger == nil:
		s.log = slog.New(slog.DiscardHandler)
	default:
		h := s.o.logger.Handler()
		if _, ok := h.(*tracing.LogHandler); !ok {
			h = tracing.NewLogHandler(h)
		}
		s.log = slog.New(h)
	}
	s.log = s.log.With("service", cfg.Name)
	if cfg.InstanceID != "" {
		s.log = s.log.With("instance", cfg.InstanceID)
	}

	s.consul = s.o.consul
	s.registry = "Consul"
	if addr := cmp.Or(cfg.Consul.Address, os.Getenv(api.HTTPAddrEnvName)); s.consul == nil && addr != "" {
		conf := api.DefaultConfig()
		conf.Address = addr
		s.ownedConn = conf.Transport
		if s.consul, err = api.NewClient(conf); err != nil {
			return nil, fielderr.New(ErrInvalidConfig, "Consul.Address", addr, "cannot be used", err)
		}
		s.registry += " at " + addr
	}
	switch {
	case s.o.registrar != nil:
		s.registrar, s.registry = s.o.registrar, fmt.Sprintf("%T", s.o.registrar)
	case s.consul != nil:
		if s.registrar, err = consul.NewRegistrar(s.consul, cfg.Consul.Registrar, consul.WithLogger(s.log)); err != nil {
			return nil, fielderr.New(ErrInvalidConfig, "Consul.Registrar", nil, "is invalid", err)
		}
	default:
		// Nothing else to register with: the in-memory registry, which
		// in-process callers can watch (see Registrar).
		mem, _ := discovery.NewMemory(discovery.MemoryConfig{}) // the zero MemoryConfig is valid
		s.registrar, s.registry = mem, "in-memory registry"
	}
	return s, nil
}

// Registrar returns what the service registers its instances with: the
// registrar given with WithRegistrar, else Consul's when Consul is
// configured, else an in-memory registry (a *discovery.Memory, which is
// also the discovery.Watcher in-process clients can find the service
// through).
func (s *Service) Registrar() discovery.Registrar { return s.registrar }

// Add applies more options before Run, for what is built with the
// service's Logger or Consul client: handlers, consumers, resources to
// close, readiness checks and hooks. WithLogger, WithConsul, WithRegistrar
// and WithSignals shape what New builds and are refused here, with a
// *FieldError; so is any option once Run has been called. Call Add before
// Run, not concurrently with it.
func (s *Service) Add(opts ...Option) error {
	if s.ran.Load() {
		return invalid("Add", nil, "must be called before Run")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.loggerSet || o.consul != nil || o.registrar != nil || o.signals != nil {
		return invalid("Add", nil, "WithLogger, WithConsul, WithRegistrar and WithSignals must be given to New")
	}
	if err := o.validate(); err != nil {
		return err
	}
	if o.httpHandler != nil {
		if s.o.httpHandler != nil {
			return invalid("WithHTTP", nil, "given twice")
		}
		s.o.httpHandler = o.httpHandler
	}
	s.o.grpcRegister = append(s.o.grpcRegister, o.grpcRegister...)
	s.o.grpcOpts = append(s.o.grpcOpts, o.grpcOpts...)
	s.o.consumers = append(s.o.consumers, o.consumers...)
	s.o.closers = append(s.o.closers, o.closers...)
	s.o.readiness = append(s.o.readiness, o.readiness...)
	s.o.afterStart = append(s.o.afterStart, o.afterStart...)
	s.o.beforeStop = append(s.o.beforeStop, o.beforeStop...)
	s.o.admin = append(s.o.admin, o.admin...)
	return nil
}

// Logger returns the service's logger: records carry the service name,
// the instance ID when it is known before Run, and the trace of their
// context.
func (s *Service) Logger() *slog.Logger { return s.log }

// Config returns the configuration with its defaults filled in.
func (s *Service) Config() Config { return s.cfg }

// Consul returns the Consul client the service registers with (for the
// configuration's Consul KV source or a watcher), or nil without Consul.
func (s *Service) Consul() *api.Client { return s.consul }

// HTTPAddr returns the address the HTTP server listens on (with the port
// picked for port 0), or "" before Run has bound it.
func (s *Service) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// GRPCAddr returns the address the gRPC server listens on, or "" before
// Run has bound it or without WithGRPC.
func (s *Service) GRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcAddr
}

// AdminAddr returns the address the admin listener listens on, or "" before
// Run has bound it or when it is off.
func (s *Service) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}

func (s *Service) primaryAddr(cfg Config) string {
	if s.registersHTTP() {
		return cfg.HTTPAddr
	}
	return cfg.GRPCAddr
}

func (s *Service) servesGRPC() bool { return len(s.o.grpcRegister) > 0 }

func (s *Service) registersHTTP() bool { return s.o.httpHandler != nil || !s.servesGRPC() }

var errSignal = errors.New("service: stop signal")

// Run starts the service, serves until ctx ends or a stop signal (SIGTERM,
// SIGINT) arrives, stops it, and returns. A second signal during the stop
// exits the process at once, with status 1. Run returns nil after a stop
// that went as planned; an error if the start failed (after undoing what
// had started: no listener, registration or goroutine is left), if a
// server or consumer failed, or if a stop phase missed its deadline. Run
// may be called once.
func (s *Service) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("service: Run called twice")
	}
	stopCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	sigs := make(chan os.Signal, 2)
	if len(s.o.signals) > 0 {
		signal.Notify(sigs, s.o.signals...)
		defer signal.Stop(sigs)
	}
	ended := make(chan struct{})
	var watching sync.WaitGroup
	watching.Go(func() {
		select {
		case sig := <-sigs:
			s.log.Info("service: stopping on signal", "signal", sig.String())
			stop(errSignal)
		case <-ended:
			return
		}
		select {
		case sig := <-sigs:
			s.log.Error("service: second signal: exiting at once", "signal", sig.String())
			os.Exit(1)
		case <-ended:
		}
	})
	defer func() { close(ended); watching.Wait() }()

	r := &run{s: s, cfg: s.cfg, log: s.log, fail: stop}
	started := time.Now()
	err := r.start(stopCtx)
	if err == nil {
		s.log.Info("service: started", "http", s.HTTPAddr(), "grpc", s.GRPCAddr(), "admin", s.AdminAddr(),
			"registry", s.registry, "took", time.Since(started).Round(time.Millisecond))
		<-stopCtx.Done()
	}
	cause := context.Cause(stopCtx)
	stopErr := r.stop()
	asked := cause == errSignal || ctx.Err() != nil
	switch {
	case asked && errors.Is(err, context.Canceled):
		err = nil // stopped while starting, as asked
	case !asked && stopCtx.Err() != nil:
		err = cause // a server or a consumer failed, while starting or after
	}
	return errors.Join(err, stopErr)
}

// run is one run of a Service: what has been started, so that the stop
// undoes exactly that.
type run struct {
	s    *Service
	cfg  Config
	log  *slog.Logger
	fail context.CancelCauseFunc

	state       *state
	telemetry   func(context.Context) error
	admin       *admin.Server
	httpLn      net.Listener
	grpcLn      net.Listener
	httpSrv     *http.Server
	grpcSrv     *grpc.Server
	serving     sync.WaitGroup
	announced   bool // callers may have seen the instance: the stop gives them Propagation to forget it
	checksStop  context.CancelFunc
	checksDone  chan struct{}
	registered  []discovery.Registered
	consumers   []chan error
	consumeStop context.CancelFunc
	stopping    atomic.Bool
}

func (r *run) start(ctx context.Context) error {
	cfg := r.cfg
	// Telemetry and the trace-aware logger (the logger was made by New).
	tcfg := cfg.Telemetry
	def(&tcfg.InstanceID, cfg.InstanceID)
	topts := []tracing.Option{tracing.WithLogger(r.log)}
	var metrics *admin.Metrics
	if !cfg.Admin.Disabled {
		m, err := admin.NewMetrics()
		if err != nil {
			return fmt.Errorf("service: admin metrics: %w", err)
		}
		metrics = m
		topts = append(topts, tracing.WithMetricReader(m.Reader()))
	}
	shutdown, err := tracing.Setup(context.WithoutCancel(ctx), tcfg, topts...)
	if err != nil {
		return fmt.Errorf("service: telemetry: %w", err)
	}
	r.telemetry = shutdown

	// Listeners.
	if r.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("service: HTTPAddr %s: %w", cfg.HTTPAddr, err)
	}
	if r.s.servesGRPC() {
		if r.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return fmt.Errorf("service: GRPCAddr %s: %w", cfg.GRPCAddr, err)
		}
	}
	r.s.mu.Lock()
	r.s.httpAddr = r.httpLn.Addr().String()
	if r.grpcLn != nil {
		r.s.grpcAddr = r.grpcLn.Addr().String()
	}
	r.s.mu.Unlock()
	if cfg.InstanceID == "" {
		ln := r.httpLn
		if !r.s.registersHTTP() {
			ln = r.grpcLn
		}
		cfg.InstanceID = fmt.Sprintf("%s-%s-%d", cfg.Name, cfg.AdvertiseAddress, ln.Addr().(*net.TCPAddr).Port)
		r.cfg.InstanceID = cfg.InstanceID
		r.log = r.log.With("instance", cfg.InstanceID)
	}

	// Servers, not ready yet.
	r.state = newState(cfg.Name, r.s.servesGRPC())
	if metrics != nil {
		if err := r.startAdmin(ctx, metrics); err != nil {
			return err
		}
	}
	var h http.Handler = http.NotFoundHandler()
	if r.s.o.httpHandler != nil {
		h = r.s.o.httpHandler
	}
	r.httpSrv = &http.Server{
		Handler:           r.state.handler(tracinghttp.Handler(h, cfg.Name)),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	r.serve("HTTP", func() error { return r.httpSrv.Serve(r.httpLn) }, http.ErrServerClosed)
	if r.grpcLn != nil {
		r.grpcSrv = grpc.NewServer(append([]grpc.ServerOption{tracinggrpc.ServerOption()}, r.s.o.grpcOpts...)...)
		healthpb.RegisterHealthServer(r.grpcSrv, healthService{r.state.grpc, r.state.draining})
		for _, register := range r.s.o.grpcRegister {
			register(r.grpcSrv)
		}
		r.serve("gRPC", func() error { return r.grpcSrv.Serve(r.grpcLn) }, grpc.ErrServerStopped)
	}

	// Ready.
	sctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := r.awaitReady(sctx); err != nil {
		return err
	}

	// Registered.
	err = r.register(sctx)
	r.announced = err == nil || len(r.registered) > 0
	if err != nil {
		return err
	}

	// Consumers.
	cctx, cancelConsumers := context.WithCancel(context.WithoutCancel(ctx))
	r.consumeStop = cancelConsumers
	for i, c := range r.s.o.consumers {
		done := make(chan error, 1)
		r.consumers = append(r.consumers, done)
		go func() {
			err := c.Run(cctx)
			if !r.stopping.Load() {
				if err == nil {
					err = errors.New("returned before the stop")
				}
				r.fail(fmt.Errorf("service: consumer %d (%T): %w", i, c, err))
			}
			done <- err
		}()
	}

	for _, hook := range r.s.o.afterStart {
		if err := hook(ctx); err != nil {
			return fmt.Errorf("service: start hook: %w", err)
		}
	}
	return nil
}

// startAdmin starts the admin listener. When the default address is taken
// (another service on the same host), the service runs without it, and
// says so; an address that was configured must be free.
func (r *run) startAdmin(ctx context.Context, metrics *admin.Metrics) error {
	cfg := r.cfg
	opts := append([]admin.Option{
		admin.WithHealth(r.state.ready), admin.WithMetrics(metrics),
		admin.WithBuild(cfg.Name, cfg.InstanceID, cfg.Version), admin.WithLogger(r.log),
		admin.WithMeterProvider(otel.GetMeterProvider()),
	}, r.s.o.admin...)
	srv, err := admin.New(cfg.Admin, opts...)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := srv.Start(ctx); err != nil {
		if cfg.Admin.Addr == "" && errors.Is(err, syscall.EADDRINUSE) {
			r.log.Warn("service: admin listener not started: its default address is in use; set Admin.Addr",
				"addr", admin.DefaultAddr)
			return nil
		}
		return fmt.Errorf("service: %w", err)
	}
	r.admin = srv
	r.s.mu.Lock()
	r.s.adminAddr = srv.Addr()
	r.s.mu.Unlock()
	return nil
}

// serve runs a server's Serve in a goroutine; an error other than the one
// its stop returns stops the service.
func (r *run) serve(what string, serve func() error, closed error) {
	r.serving.Go(func() {
		if err := serve(); err != nil && !errors.Is(err, closed) && !r.stopping.Load() {
			r.fail(fmt.Errorf("service: %s server: %w", what, err))
		}
	})
}

// awaitReady runs the readiness checks until they all pass, then marks the
// service ready and keeps running them in the background.
func (r *run) awaitReady(ctx context.Context) error {
	checks := r.s.o.readiness
	interval, timeout := r.cfg.Readiness.Interval, r.cfg.Readiness.Timeout
	for logged := false; ; {
		failing := runChecks(ctx, checks, timeout)
		if failing == "" {
			break
		}
		r.state.setFailing(failing)
		if !logged {
			r.log.Info("service: waiting until ready", "failing", failing)
			logged = true
		}
		if !backoff.Sleep(ctx, interval) {
			if context.Cause(ctx) == context.DeadlineExceeded {
				return fmt.Errorf("service: not ready within StartTimeout (%v): %s", r.cfg.StartTimeout, failing)
			}
			return ctx.Err()
		}
	}
	r.state.set(phaseServing, "")
	if len(checks) == 0 {
		return nil
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.checksStop, r.checksDone = cancel, make(chan struct{})
	go func() {
		defer close(r.checksDone)
		t := time.NewTicker(interval)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
			}
			failing := runChecks(cctx, checks, timeout)
			if cctx.Err() != nil {
				return
			}
			if failing != last {
				if failing != "" {
					r.log.Warn("service: not ready", "failing", failing)
				} else {
					r.log.Info("service: ready again")
				}
				last = failing
			}
			r.state.setFailing(failing)
		}
	}()
	return nil
}

// registrations returns what to register: one instance per protocol, each
// with its protocol tag and its check.
func (r *run) registrations() []discovery.Registration {
	cfg := r.cfg
	meta := map[string]string{}
	for k, v := range cfg.Meta {
		meta[k] = v
	}
	if cfg.Version != "" {
		meta[discovery.MetaVersion] = cfg.Version
	}
	both := r.s.registersHTTP() && r.grpcLn != nil
	one := func(proto string, ln net.Listener, check discovery.Check) discovery.Registration {
		id := cfg.InstanceID
		if both {
			id += "-" + proto
		}
		check.Interval, check.Timeout = cfg.Check.Interval, cfg.Check.Timeout
		check.DeregisterCriticalAfter = max(cfg.Check.DeregisterCriticalAfter, 0)
		return discovery.Registration{
			Instance: discovery.Instance{
				ID: id, Service: cfg.Name, Address: cfg.AdvertiseAddress, Port: ln.Addr().(*net.TCPAddr).Port,
				Tags: append([]string{proto}, cfg.Tags...), Meta: meta,
			},
			Check: &check,
		}
	}
	var regs []discovery.Registration
	if r.s.registersHTTP() {
		port := strconv.Itoa(r.httpLn.Addr().(*net.TCPAddr).Port)
		regs = append(regs, one(ProtocolHTTP, r.httpLn, discovery.Check{HTTP: "http://" + net.JoinHostPort(cfg.AdvertiseAddress, port) + ReadyzPath}))
	}
	if r.grpcLn != nil {
		port := strconv.Itoa(r.grpcLn.Addr().(*net.TCPAddr).Port)
		regs = append(regs, one(ProtocolGRPC, r.grpcLn, discovery.Check{GRPC: net.JoinHostPort(cfg.AdvertiseAddress, port)}))
	}
	return regs
}

// Protocol tags: each registered instance carries the tag of the protocol
// its port serves, so that a caller watches the right port:
// client.WithWatcher(w, discovery.WithTags(service.ProtocolGRPC)).
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
)

// register registers each instance, retrying a registry that cannot be
// reached until ctx (bounded by StartTimeout) ends.
func (r *run) register(ctx context.Context) error {
	if r.s.registrar == nil {
		r.log.Info("service: no registry configured: not registered")
		return nil
	}
	b := backoff.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	for _, reg := range r.registrations() {
		for n := 1; ; n++ {
			h, err := r.s.registrar.Register(ctx, reg)
			if err == nil {
				r.registered = append(r.registered, h)
				break
			}
			if errors.Is(err, discovery.ErrInvalidRegistration) || errors.Is(err, discovery.ErrDuplicateInstance) {
				return fmt.Errorf("service: register %s with %s: %w", reg.Instance.ID, r.s.registry, err)
			}
			if n == 1 {
				r.log.Warn("service: registry unreachable; retrying until StartTimeout", "registry", r.s.registry, "err", err)
			}
			if !backoff.Sleep(ctx, b.Delay(n)) {
				if context.Cause(ctx) == context.DeadlineExceeded {
					return fmt.Errorf("service: register %s with %s: not registered within StartTimeout (%v): %w",
						reg.Instance.ID, r.s.registry, r.cfg.StartTimeout, err)
				}
				return ctx.Err()
			}
		}
	}
	return nil
}

// stop undoes what start did, in the stop order, each phase within its
// deadline, and logs how long each phase took.
func (r *run) stop() error {
	r.stopping.Store(true)
	sd := r.cfg.Shutdown
	began := time.Now()
	var errs []error
	phase := func(name string, d time.Duration, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		t := time.Now()
		if err := f(ctx); err != nil {
			errs = append(errs, fmt.Errorf("service: %s: %w", name, err))
		}
		r.log.Info("service: stop phase done", "phase", name, "took", time.Since(t).Round(time.Millisecond))
	}
	if r.state != nil {
		r.log.Info("service: stopping")
	}

	phase("deregister", sd.Deregister, func(ctx context.Context) error {
		for _, hook := range r.s.o.beforeStop {
			hook(ctx)
		}
		if r.state != nil {
			r.state.set(phaseStopping, "")
		}
		if r.checksStop != nil {
			r.checksStop()
			<-r.checksDone
		}
		errs := make([]error, len(r.registered))
		var wg sync.WaitGroup
		for i, h := range r.registered {
			wg.Go(func() {
				err := h.Deregister(ctx)
				if errors.Is(err, consul.ErrNotConfirmed) {
					r.log.Warn("service: deregistration not confirmed in time; draining anyway", "id", h.Instance().ID)
					err = nil
				}
				errs[i] = err
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})

	if r.announced && sd.Propagation > 0 {
		phase("propagation", sd.Propagation, func(ctx context.Context) error {
			<-ctx.Done() // callers' balancers drop the instance meanwhile
			return nil
		})
	}

	phase("consumers", sd.Consumers, func(ctx context.Context) error {
		errs := make([]error, len(r.consumers))
		var wg sync.WaitGroup
		for i, done := range r.consumers {
			c := r.s.o.consumers[i]
			wg.Go(func() {
				if err := c.Stop(ctx); err != nil {
					errs[i] = fmt.Errorf("consumer %d (%T): %w", i, c, err)
				}
				select {
				case <-done:
				case <-ctx.Done():
					errs[i] = errors.Join(errs[i], fmt.Errorf("consumer %d (%T): Run did not return: %w", i, c, ctx.Err()))
				}
			})
		}
		wg.Wait()
		if r.consumeStop != nil {
			r.consumeStop()
		}
		return errors.Join(errs...)
	})

	phase("drain", sd.Drain, func(ctx context.Context) error {
		if r.state != nil {
			close(r.state.draining)
		}
		var httpErr, grpcErr error
		var wg sync.WaitGroup
		if r.httpSrv != nil {
			wg.Go(func() {
				if err := r.httpSrv.Shutdown(ctx); err != nil {
					httpErr = fmt.Errorf("HTTP: %w; connections closed", err)
					_ = r.httpSrv.Close()
				}
			})
		} else if r.httpLn != nil {
			_ = r.httpLn.Close()
		}
		if r.grpcSrv != nil {
			graceful := make(chan struct{})
			go func() { r.grpcSrv.GracefulStop(); close(graceful) }()
			select {
			case <-graceful:
			case <-ctx.Done():
				r.grpcSrv.Stop()
				<-graceful
				grpcErr = fmt.Errorf("gRPC: %w; connections closed", ctx.Err())
			}
		} else if r.grpcLn != nil {
			_ = r.grpcLn.Close()
		}
		wg.Wait()
		r.serving.Wait()
		return errors.Join(httpErr, grpcErr)
	})

	phase("close", sd.Close, func(ctx context.Context) error {
		var errs []error
		for i := len(r.s.o.closers) - 1; i >= 0; i-- {
			c := r.s.o.closers[i]
			if err := c.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%T: %w", c, err))
			}
		}
		if r.s.ownedConn != nil {
			r.s.ownedConn.CloseIdleConnections()
		}
		return errors.Join(errs...)
	})

	phase("telemetry", sd.Telemetry, func(ctx context.Context) error {
		var err error
		if r.telemetry != nil {
			err = r.telemetry(ctx)
		}
		if r.admin != nil { // last: the admin page shows the whole stop
			err = errors.Join(err, r.admin.Close(ctx))
		}
		return err
	})
	r.log.Info("service: stopped", "took", time.Since(began).Round(time.Millisecond))
	return errors.Join(errs...)
}

// advertise returns the address to register for a listener on addr.
func advertise(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return host
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
