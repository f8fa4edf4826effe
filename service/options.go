package service

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"syscall"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/service/admin"
)

// Option configures a Service with what only code can give; options are
// applied once, by New or by Add.
type Option func(*options)

type options struct {
	httpHandler  http.Handler
	grpcRegister []func(*grpc.Server)
	grpcOpts     []grpc.ServerOption
	consumers    []Runner
	closers      []Closer
	readiness    []readinessCheck
	afterStart   []func(context.Context) error
	beforeStop   []func(context.Context)
	registrar    discovery.Registrar
	consul       *api.Client
	logger       *slog.Logger
	loggerSet    bool
	signals      []os.Signal
	admin        []admin.Option
}

type readinessCheck struct {
	name  string
	check func(ctx context.Context) error
}

// WithHTTP serves h on Config.HTTPAddr, traced (tracinghttp), beside the
// health endpoints. Without it the HTTP server serves only the health
// endpoints.
func WithHTTP(h http.Handler) Option { return func(o *options) { o.httpHandler = h } }

// WithGRPC serves gRPC on Config.GRPCAddr: register is called once with
// the server, to register the services on it. The server is traced
// (tracinggrpc) and serves grpc.health.v1. WithGRPC may be given more
// than once.
func WithGRPC(register func(*grpc.Server)) Option {
	return func(o *options) { o.grpcRegister = append(o.grpcRegister, register) }
}

// WithGRPCServerOptions adds options to the gRPC server, such as the
// interceptors of resiliencegrpc.
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

// WithConsumer runs c (such as a *messaging.Consumer) once the service is
// registered, and stops it in the consumers phase of the stop: no more
// messages taken, the ones in flight finished. If its Run returns before
// the stop, the service stops and Run returns that error.
func WithConsumer(c Runner) Option { return func(o *options) { o.consumers = append(o.consumers, c) } }

// WithCloser hands c to the service, which closes it in the close phase
// of the stop, after the servers have drained: resources given later are
// closed first. Use it for clients, publishers and connections.
func WithCloser(c Closer) Option { return func(o *options) { o.closers = append(o.closers, c) } }

// WithReadiness adds a readiness check, run every Readiness.Interval
// within Readiness.Timeout. The service is ready when all pass: the start
// waits for them (within StartTimeout), and while one fails /readyz
// answers 503 and gRPC health NOT_SERVING. Liveness never depends on them.
func WithReadiness(name string, check func(ctx context.Context) error) Option {
	return func(o *options) { o.readiness = append(o.readiness, readinessCheck{name, check}) }
}

// WithStartHook runs f at the end of the start, once the consumers run.
// An error stops the service, undoing the start, and Run returns it.
func WithStartHook(f func(ctx context.Context) error) Option {
	return func(o *options) { o.afterStart = append(o.afterStart, f) }
}

// WithStopHook runs f when the stop begins, before the service turns not
// ready, within the Deregister phase's deadline.
func WithStopHook(f func(ctx context.Context)) Option {
	return func(o *options) { o.beforeStop = append(o.beforeStop, f) }
}

// WithAdmin shows more on the admin listener (Config.Admin): the
// policies, clients, callers and configuration to show and act on, such as
// admin.WithPolicies(registry) and admin.WithClients(monitor). The service
// adds its health, build and metrics itself. WithAdmin may be given more
// than once.
func WithAdmin(opts ...admin.Option) Option {
	return func(o *options) { o.admin = append(o.admin, opts...) }
}

// WithRegistrar registers the instance with r instead of Consul, such as
// a *discovery.Memory shared with the service's in-process callers.
func WithRegistrar(r discovery.Registrar) Option { return func(o *options) { o.registrar = r } }

// WithConsul registers the instance with the Consul agent c talks to,
// whatever Config.Consul.Address says.
func WithConsul(c *api.Client) Option { return func(o *options) { o.consul = c } }

// WithLogger sets the logger of the service and of what it builds; its
// handler is wrapped with tracing.NewLogHandler so that records carry the
// trace. Nil is silent. Default: text to standard error.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger, o.loggerSet = l, true }
}

// WithSignals sets the signals that stop the service. Default SIGTERM and
// SIGINT; none (WithSignals()) leaves stopping to Run's context.
func WithSignals(sigs ...os.Signal) Option {
	return func(o *options) { o.signals = append([]os.Signal{}, sigs...) }
}

var defaultSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

func (o *options) validate() error {
	for _, c := range o.readiness {
		if c.name == "" || c.check == nil {
			return invalid("WithReadiness", c.name, "needs a name and a check function")
		}
	}
	for i, c := range o.consumers {
		if c == nil {
			return invalid("WithConsumer", i, "consumer must not be nil")
		}
	}
	for i, c := range o.closers {
		if c == nil {
			return invalid("WithCloser", i, "closer must not be nil")
		}
	}
	for _, f := range o.grpcRegister {
		if f == nil {
			return invalid("WithGRPC", nil, "register func must not be nil")
		}
	}
	return nil
}
