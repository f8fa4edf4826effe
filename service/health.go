package service

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health endpoints of the HTTP server. They are never traced, limited or
// shed (they are among tracinghttp's and resilience's health paths).
const (
	// LivezPath answers 200 while the process runs: a dependency's
	// trouble (an open breaker, an unreachable Consul) never fails it,
	// so Kubernetes does not restart every pod because of it.
	LivezPath = "/livez"
	// ReadyzPath answers 200 while the service is ready to take calls,
	// 503 while it starts, while a readiness check fails and while it
	// stops. The registry's HTTP check probes it.
	ReadyzPath = "/readyz"
	// HealthPath answers as ReadyzPath, for load balancers that probe
	// /health.
	HealthPath = "/health"
)

// LivenessService is the grpc.health.v1 service name whose status is
// SERVING while the process runs, for a Kubernetes gRPC liveness probe
// (grpc.service: liveness). The empty name and Config.Name report
// readiness, as ReadyzPath does.
const LivenessService = "liveness"

type phase int

const (
	phaseStarting phase = iota
	phaseServing
	phaseStopping
)

// state is the one health state that feeds the HTTP endpoints and the
// gRPC health service.
type state struct {
	name     string
	grpc     *health.Server // nil without gRPC
	draining chan struct{}  // closed when the servers start draining

	mu      sync.Mutex
	phase   phase
	failing string // the failing readiness check and its error, "" when all pass
}

func newState(name string, withGRPC bool) *state {
	s := &state{name: name, draining: make(chan struct{})}
	if withGRPC {
		s.grpc = health.NewServer()
		s.grpc.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	}
	s.publish()
	return s
}

func (s *state) set(p phase, failing string) {
	s.mu.Lock()
	if s.phase != phaseStopping {
		s.phase, s.failing = p, failing
	}
	s.mu.Unlock()
	s.publish()
}

func (s *state) setFailing(failing string) {
	s.mu.Lock()
	p := s.phase
	s.mu.Unlock()
	s.set(p, failing)
}

func (s *state) ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.phase == phaseStarting && s.failing != "":
		return false, "starting: " + s.failing
	case s.phase == phaseStarting:
		return false, "starting"
	case s.phase == phaseStopping:
		return false, "stopping"
	case s.failing != "":
		return false, s.failing
	}
	return true, "ok"
}

func (s *state) publish() {
	if s.grpc == nil {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok, _ := s.ready(); ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.grpc.SetServingStatus("", st)
	s.grpc.SetServingStatus(s.name, st)
}

// handler serves the health endpoints and passes other requests to next.
func (s *state) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case LivezPath:
			answer(w, http.StatusOK, "ok")
		case ReadyzPath, HealthPath:
			if ok, why := s.ready(); ok {
				answer(w, http.StatusOK, why)
			} else {
				answer(w, http.StatusServiceUnavailable, why)
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, body)
}

// runChecks runs the readiness checks, each within timeout, and returns
// "" when all pass, else the failing ones with their errors.
func runChecks(ctx context.Context, checks []readinessCheck, timeout time.Duration) string {
	var failing []string
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			failing = append(failing, fmt.Sprintf("readiness check %q: %v", c.name, err))
		}
	}
	return strings.Join(failing, "; ")
}

// healthService is the gRPC health service of the state: its Watch streams
// end when the drain begins (after reporting NOT_SERVING), so that a
// caller watching the instance's health does not hold GracefulStop until
// Shutdown.Drain.
type healthService struct {
	*health.Server
	draining <-chan struct{}
}

func (h healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	return h.Server.Watch(in, watchStream{stream, ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }
