package service

import (
	"errors"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/internal/fielderr"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/tracing"
)

// Defaults of Config.
const (
	DefaultHTTPAddr     = ":8080"
	DefaultGRPCAddr     = ":9090"
	DefaultStartTimeout = 30 * time.Second

	DefaultCheckInterval           = 5 * time.Second
	DefaultCheckTimeout            = 2 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute

	DefaultReadinessInterval = time.Second
	DefaultReadinessTimeout  = time.Second
)

// Defaults of Shutdown. They add up to 28s, within the 30s that Kubernetes
// waits between SIGTERM and SIGKILL by default (terminationGracePeriodSeconds).
const (
	DefaultShutdownDeregister  = 5 * time.Second
	DefaultShutdownPropagation = 2 * time.Second
	DefaultShutdownConsumers   = 5 * time.Second
	DefaultShutdownDrain       = 10 * time.Second
	DefaultShutdownClose       = 3 * time.Second
	DefaultShutdownTelemetry   = 3 * time.Second
)

// Config is what a person writes in a service's configuration file about
// how it runs: its name, addresses, checks and shutdown deadlines. Keys are
// snake_case in yaml and json tags alike; the zero value of each field means
// its documented default. It is plain data, safe to copy. What only code can
// give (handlers, gRPC services, consumers, resources) is an Option.
type Config struct {
	// Name is the service's name: the name it registers under, callers
	// use and telemetry reports. Required; letters, digits and dashes.
	Name string `yaml:"name" json:"name"`
	// InstanceID identifies this instance in discovery and telemetry.
	// Default "<name>-<advertise address>-<port>" (see Registration in the
	// package documentation for the IDs of a service that serves both
	// HTTP and gRPC).
	InstanceID string `yaml:"instance_id" json:"instance_id"`
	// Version is registered as the "version" metadata and reported as
	// service.version. Optional.
	Version string `yaml:"version" json:"version"`

	// HTTPAddr is the "host:port" the HTTP server listens on: the
	// handler of WithHTTP and the health endpoints. Default ":8080";
	// port 0 picks a free port.
	HTTPAddr string `yaml:"http_addr" json:"http_addr"`
	// GRPCAddr is the "host:port" the gRPC server listens on, when
	// WithGRPC is given. Default ":9090"; port 0 picks a free port.
	GRPCAddr string `yaml:"grpc_addr" json:"grpc_addr"`
	// AdvertiseAddress is the host or IP address registered in discovery,
	// which callers and the health checks of the registry dial. Default:
	// the listen host when it is a specific address, else the first
	// non-loopback IPv4 address of the machine, else 127.0.0.1.
	AdvertiseAddress string `yaml:"advertise_address" json:"advertise_address"`
	// Tags are registered with the instance, after the protocol tag.
	Tags []string `yaml:"tags" json:"tags"`
	// Meta is registered with the instance ("zone", "canary", …).
	Meta map[string]string `yaml:"meta" json:"meta"`

	// Check is how the registry checks the instance's health.
	Check Check `yaml:"check" json:"check"`
	// Readiness is how often the readiness checks of WithReadiness run.
	Readiness Readiness `yaml:"readiness" json:"readiness"`
	// Consul is the Consul agent to register with. Leave it empty, and
	// CONSUL_HTTP_ADDR unset, to run without Consul.
	Consul Consul `yaml:"consul" json:"consul"`
	// Telemetry is handed to tracing.Setup; its ServiceName, InstanceID
	// and ServiceVersion default to Name, InstanceID and Version.
	Telemetry tracing.Config `yaml:"telemetry" json:"telemetry"`

	// StartTimeout bounds the start: waiting for the readiness checks to
	// pass and for the registry to accept the instance. Default 30s.
	StartTimeout time.Duration `yaml:"start_timeout" json:"start_timeout"`
	// Shutdown holds the deadline of each phase of the stop.
	Shutdown Shutdown `yaml:"shutdown" json:"shutdown"`
	// Admin is the admin listener: health, /metrics, pprof, the state
	// page and its API, automatic profiles (package service/admin). On by
	// default, on 127.0.0.1:9091.
	Admin admin.Config `yaml:"admin" json:"admin"`
}

// Check is how the registry checks an instance: an HTTP GET of /readyz on
// the HTTP listener, or a grpc.health.v1 Check on the gRPC listener.
type Check struct {
	// Interval is the time between two probes. Default 5s.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one probe. Default 2s, at most Interval.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// DeregisterCriticalAfter lets the registry remove an instance whose
	// check has failed that long (a crashed process). Default 1m; a
	// negative value keeps such instances for ever.
	DeregisterCriticalAfter time.Duration `yaml:"deregister_critical_after" json:"deregister_critical_after"`
}

// Readiness is how the readiness checks run.
type Readiness struct {
	// Interval is the time between two runs of the checks. Default 1s.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Timeout bounds one check. Default 1s.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
}

// Consul is the Consul agent the service registers with.
type Consul struct {
	// Address is the agent's "host:port" (or URL). Default: the
	// CONSUL_HTTP_ADDR environment variable; when both are empty, the
	// service does not use Consul. Token, TLS and datacenter come from the
	// other CONSUL_* variables, as the Consul client reads them.
	Address string `yaml:"address" json:"address"`
	// Registrar tunes the registrar (reconciliation, backoff). Its
	// DeregisterTimeout defaults to Shutdown.Deregister.
	Registrar consul.RegistrarConfig `yaml:"registrar" json:"registrar"`
}

// Shutdown holds the deadline of each phase of the stop, in the order they
// run. A phase that finishes early hands its remaining time to no one: the
// worst case is the sum, 28s with the defaults.
type Shutdown struct {
	// Deregister bounds the removal from the registry, until its watchers
	// no longer list the instance. Default 5s.
	Deregister time.Duration `yaml:"deregister" json:"deregister"`
	// Propagation is how long the servers keep serving after that, for
	// callers' balancers (and Kubernetes endpoints) to drop the instance.
	// Default 2s; a negative value skips the wait.
	Propagation time.Duration `yaml:"propagation" json:"propagation"`
	// Consumers bounds the consumers' stop: no more fetching, in-flight
	// messages finished and acknowledged. Default 5s.
	Consumers time.Duration `yaml:"consumers" json:"consumers"`
	// Drain bounds HTTP Shutdown and gRPC GracefulStop; connections still
	// open then are closed. Default 10s.
	Drain time.Duration `yaml:"drain" json:"drain"`
	// Close bounds the closing of the resources given with WithCloser.
	// Default 3s.
	Close time.Duration `yaml:"close" json:"close"`
	// Telemetry bounds the last flush of spans and metrics. Default 3s.
	Telemetry time.Duration `yaml:"telemetry" json:"telemetry"`
}

// Total returns the longest a stop can take with these deadlines (their
// sum, a negative Propagation counting as 0).
func (s Shutdown) Total() time.Duration {
	return s.Deregister + max(s.Propagation, 0) + s.Consumers + s.Drain + s.Close + s.Telemetry
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)

// Validate reports the first invalid field of c (after defaults) as a
// *FieldError matching ErrInvalidConfig.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with its defaults filled in, or the first invalid
// field.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, invalid("Name", nil, "must not be empty")
	}
	if !namePattern.MatchString(c.Name) {
		return c, invalid("Name", c.Name, "must be letters, digits and dashes, starting and ending with a letter or digit")
	}
	def(&c.HTTPAddr, DefaultHTTPAddr)
	def(&c.GRPCAddr, DefaultGRPCAddr)
	for _, a := range []struct {
		field, addr string
	}{{"HTTPAddr", c.HTTPAddr}, {"GRPCAddr", c.GRPCAddr}} {
		_, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			return c, invalid(a.field, a.addr, `must be "host:port"`)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return c, invalid(a.field, a.addr, "port must be a number from 0 to 65535")
		}
	}
	durations := []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{
		{"StartTimeout", &c.StartTimeout, DefaultStartTimeout},
		{"Check.Interval", &c.Check.Interval, DefaultCheckInterval},
		{"Readiness.Interval", &c.Readiness.Interval, DefaultReadinessInterval},
		{"Readiness.Timeout", &c.Readiness.Timeout, DefaultReadinessTimeout},
		{"Shutdown.Deregister", &c.Shutdown.Deregister, DefaultShutdownDeregister},
		{"Shutdown.Consumers", &c.Shutdown.Consumers, DefaultShutdownConsumers},
		{"Shutdown.Drain", &c.Shutdown.Drain, DefaultShutdownDrain},
		{"Shutdown.Close", &c.Shutdown.Close, DefaultShutdownClose},
		{"Shutdown.Telemetry", &c.Shutdown.Telemetry, DefaultShutdownTelemetry},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return c, invalid(d.field, *d.v, "must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	switch {
	case c.Check.Timeout < 0:
		return c, invalid("Check.Timeout", c.Check.Timeout, "must not be negative")
	case c.Check.Timeout == 0:
		c.Check.Timeout = min(DefaultCheckTimeout, c.Check.Interval)
	}
	if c.Check.Timeout > c.Check.Interval {
		return c, invalid("Check.Timeout", c.Check.Timeout, "must not exceed Check.Interval ("+c.Check.Interval.String()+")")
	}
	if c.Shutdown.Propagation == 0 {
		c.Shutdown.Propagation = DefaultShutdownPropagation
	}
	switch {
	case c.Check.DeregisterCriticalAfter == 0:
		c.Check.DeregisterCriticalAfter = DefaultDeregisterCriticalAfter
	case c.Check.DeregisterCriticalAfter > 0 && c.Check.DeregisterCriticalAfter < time.Minute:
		return c, invalid("Check.DeregisterCriticalAfter", c.Check.DeregisterCriticalAfter, "must be at least 1m (Consul's minimum), or negative for never")
	}
	if c.Consul.Registrar.DeregisterTimeout == 0 {
		c.Consul.Registrar.DeregisterTimeout = c.Shutdown.Deregister
	}
	for k := range c.Meta {
		if k == "" {
			return c, invalid("Meta", c.Meta, "keys must not be empty")
		}
	}
	if !c.Admin.Disabled {
		if err := c.Admin.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) { // behind this package's sentinel
				return c, fielderr.New(ErrInvalidConfig, fe.Field, fe.Value, fe.Reason, err)
			}
			return c, err
		}
	}
	def(&c.Telemetry.ServiceName, c.Name)
	def(&c.Telemetry.ServiceVersion, c.Version)
	return c, nil
}

func def(s *string, d string) {
	if *s == "" {
		*s = d
	}
}
