package service_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// quiet is a Config that starts and stops fast on loopback, silently.
func quiet(name string) service.Config {
	return service.Config{
		Name:         name,
		HTTPAddr:     "127.0.0.1:0",
		GRPCAddr:     "127.0.0.1:0",
		StartTimeout: 5 * time.Second,
		Readiness:    service.Readiness{Interval: 10 * time.Millisecond},
		Shutdown:     service.Shutdown{Propagation: -1},
	}
}

func TestNewRejectsBadConfigNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*service.Config)
	}{
		{"Name", func(c *service.Config) { c.Name = "" }},
		{"Name", func(c *service.Config) { c.Name = "orders service" }},
		{"HTTPAddr", func(c *service.Config) { c.HTTPAddr = "8080" }},
		{"GRPCAddr", func(c *service.Config) { c.GRPCAddr = "127.0.0.1:70000" }},
		{"StartTimeout", func(c *service.Config) { c.StartTimeout = -time.Second }},
		{"Check.Timeout", func(c *service.Config) { c.Check = service.Check{Interval: time.Second, Timeout: 2 * time.Second} }},
		{"Check.DeregisterCriticalAfter", func(c *service.Config) { c.Check.DeregisterCriticalAfter = time.Second }},
		{"Shutdown.Drain", func(c *service.Config) { c.Shutdown.Drain = -time.Second }},
		{"Consul.Registrar", func(c *service.Config) {
			c.Consul = service.Consul{Address: "127.0.0.1:1"}
			c.Consul.Registrar.Backoff = -1
		}},
	} {
		cfg := quiet("orders")
		tc.edit(&cfg)
		_, err := service.New(cfg)
		var fe *service.FieldError
		if !errors.Is(err, service.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: New: %v, want a FieldError for %s", tc.field, err, tc.field)
		}
		if err := cfg.Validate(); err != nil && !strings.Contains(err.Error(), tc.field) && tc.field != "Consul.Registrar" {
			t.Errorf("Validate: %v, want it to name %s", err, tc.field)
		}
	}
	if _, err := service.New(quiet("orders"), service.WithReadiness("", nil)); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("New with a readiness check without name: %v, want ErrInvalidConfig", err)
	}
}

func TestConfigDefaultsFitKubernetesGracePeriod(t *testing.T) {
	svc, err := service.New(service.Config{Name: "orders"}, service.WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg := svc.Config()
	if cfg.HTTPAddr != ":8080" || cfg.GRPCAddr != ":9090" {
		t.Errorf("addresses %q %q, want :8080 :9090", cfg.HTTPAddr, cfg.GRPCAddr)
	}
	if total := cfg.Shutdown.Total(); total >= 30*time.Second {
		t.Errorf("default shutdown phases add up to %v, want below Kubernetes' 30s grace period", total)
	}
	if !strings.HasPrefix(cfg.InstanceID, "orders-") || !strings.HasSuffix(cfg.InstanceID, "-8080") {
		t.Errorf("default InstanceID %q, want orders-<address>-8080", cfg.InstanceID)
	}
}

// Each failure at start returns an error that names its cause, after
// undoing what had started: the ports are free again and no goroutine is
// left.
func TestStartFailuresUndoWhatStarted(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenAddr := taken.Addr().String()
	closed := strconv.Itoa(vitamintest.FreePort(t)) // nobody listens there

	grpcOpt := service.WithGRPC(func(*grpc.Server) {})
	for _, tc := range []struct {
		name string
		edit func(*service.Config)
		opts []service.Option
		want []string
		is   error
	}{
		{name: "HTTP port in use", edit: func(c *service.Config) { c.HTTPAddr = takenAddr },
			want: []string{"HTTPAddr " + takenAddr}, is: syscall.EADDRINUSE},
		{name: "gRPC port in use", edit: func(c *service.Config) { c.GRPCAddr = takenAddr }, opts: []service.Option{grpcOpt},
			want: []string{"GRPCAddr " + takenAddr}, is: syscall.EADDRINUSE},
		{name: "Consul unreachable", edit: func(c *service.Config) {
			c.Consul.Address = "127.0.0.1:" + closed
			c.StartTimeout = 300 * time.Millisecond
		}, opts: []service.Option{grpcOpt},
			want: []string{"Consul at 127.0.0.1:" + closed, "not registered within StartTimeout", "connection refused"}},
		{name: "never ready", edit: func(c *service.Config) { c.StartTimeout = 100 * time.Millisecond },
			opts: []service.Option{service.WithReadiness("db", func(context.Context) error { return errors.New("no connection") })},
			want: []string{"not ready within StartTimeout", `readiness check "db": no connection`}},
		{name: "start hook", opts: []service.Option{service.WithStartHook(func(context.Context) error { return errors.New("cache not warm") })},
			want: []string{"start hook: cache not warm"}},
		{name: "consumer fails", opts: []service.Option{service.WithConsumer(service.RunFunc(func(context.Context) error { return errors.New("stream gone") }))},
			want: []string{"consumer 0", "stream gone"}},
		{name: "bad telemetry", edit: func(c *service.Config) { c.Telemetry.Exporter = "carrier-pigeon" },
			want: []string{"telemetry", "Exporter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			cfg := quiet("orders")
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			var addrs []string
			opts := append(tc.opts, service.WithLogger(nil), service.WithSignals())
			registry, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer registry.Close()
			if cfg.Consul.Address == "" {
				opts = append(opts, service.WithRegistrar(registry))
			}
			var svc *service.Service
			opts = append(opts, service.WithStopHook(func(context.Context) { addrs = []string{svc.HTTPAddr(), svc.GRPCAddr()} }))
			svc, err = service.New(cfg, opts...)
			if err != nil {
				t.Fatal(err)
			}
			err = svc.Run(context.Background())
			if err == nil {
				t.Fatal("Run returned nil, want the start's error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Run: %v\nwant it to say %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Run: %v, want errors.Is %v", err, tc.is)
			}
			if n := len(registry.Instances("orders")); n != 0 {
				t.Errorf("%d instances left registered after the failed start", n)
			}
			for _, a := range addrs {
				if a == "" || a == takenAddr {
					continue
				}
				ln, err := net.Listen("tcp", a)
				if err != nil {
					t.Errorf("after the failed start %s is still taken: %v", a, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

func TestAddRefusesWhatShapesNewAndComesAfterRun(t *testing.T) {
	svc, err := service.New(quiet("orders"), service.WithLogger(nil), service.WithSignals())
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]service.Option{
		"WithLogger":    service.WithLogger(nil),
		"WithSignals":   service.WithSignals(),
		"WithReadiness": service.WithReadiness("db", nil),
	} {
		if err := svc.Add(opt); !errors.Is(err, service.ErrInvalidConfig) {
			t.Errorf("Add(%s): %v, want ErrInvalidConfig", name, err)
		}
	}
	stopped := false
	if err := svc.Add(service.WithStartHook(func(context.Context) error { return errors.New("stop here") }),
		service.WithStopHook(func(context.Context) { stopped = true })); err != nil {
		t.Fatal(err)
	}
	if err := svc.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "stop here") || !stopped {
		t.Fatalf("Run: %v (stop hook ran: %v), want the hooks given to Add to run", err, stopped)
	}
	if err := svc.Add(service.WithCloser(service.CloseFunc(func(context.Context) error { return nil }))); !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("Add after Run: %v, want ErrInvalidConfig", err)
	}
}
