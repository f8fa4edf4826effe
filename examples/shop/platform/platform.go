package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// Service is one running instance of a shop service.
type Service struct {
	Name, ID string
	Log      *slog.Logger
	Consul   *api.Client

	shutdownTelemetry func(context.Context) error
}

// Start sets up logging, telemetry and the Consul client for the instance
// id of service name. Consul's address comes from CONSUL_HTTP_ADDR;
// telemetry honours the OTEL_* variables (no exporter unless asked).
func Start(ctx context.Context, name, id string) (*Service, error) {
	log := slog.New(tracing.NewLogHandler(slog.NewTextHandler(os.Stderr, nil))).
		With("service", name, "instance", id)
	shutdown, err := tracing.Setup(ctx, tracing.Config{ServiceName: name, InstanceID: id, ServiceVersion: "1.0.0"})
	if err != nil {
		return nil, fmt.Errorf("%s: telemetry: %w", name, err)
	}
	c, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		return nil, fmt.Errorf("%s: consul client: %w", name, err)
	}
	return &Service{Name: name, ID: id, Log: log, Consul: c, shutdownTelemetry: shutdown}, nil
}

// ServeHTTP serves h on 127.0.0.1:port, registers the instance in Consul
// with an HTTP check on /health and the given metadata, and runs until
// SIGINT or SIGTERM. Then it deregisters, waits until watchers have seen
// it, drains in-flight requests and returns.
func (s *Service) ServeHTTP(ctx context.Context, port int, meta map[string]string, h http.Handler) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/", tracinghttp.Handler(h, s.Name))

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen: %w", s.Name, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	registrar, err := consul.NewRegistrar(s.Consul, consul.RegistrarConfig{}, consul.WithLogger(s.Log))
	if err != nil {
		return err
	}
	reg, err := registrar.Register(ctx, discovery.Registration{
		Instance: discovery.Instance{ID: s.ID, Service: s.Name, Address: "127.0.0.1", Port: port, Meta: meta},
		Check:    &discovery.Check{HTTP: "http://" + addr + "/health", Interval: time.Second, Timeout: time.Second},
	})
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("%s: register: %w", s.Name, err)
	}
	s.Log.Info("serving", "addr", addr)

	sig, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-sig.Done():
	case err := <-served:
		return fmt.Errorf("%s: serve: %w", s.Name, err)
	}

	s.Log.Info("stopping: deregister, then drain")
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := reg.Deregister(dctx); err != nil {
		s.Log.Warn("deregister", "err", err)
	}
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// JetStream connects to the broker at NATS_URL (retrying while it is not
// up yet, reconnecting for ever) and creates or updates the streams. Close
// the returned connection when done.
func (s *Service) JetStream(ctx context.Context, streams []messaging.StreamConfig) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(Getenv("NATS_URL", nats.DefaultURL), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: nats: %w", s.Name, err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		for _, sc := range streams {
			if _, err = messaging.EnsureStream(ctx, js, sc); err != nil {
				break
			}
		}
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%s: jetstream: %w", s.Name, err)
	}
	return nc, js, nil
}

// Close flushes telemetry.
func (s *Service) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.shutdownTelemetry(ctx)
}

// Getenv returns the environment variable key, or def when it is unset.
func Getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// WriteJSON answers with v as JSON and the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
