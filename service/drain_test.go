package service_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// slowService runs a service whose handler answers once release is closed,
// and returns it with the channel that says a call is in flight.
func slowService(t *testing.T, cfg service.Config, release <-chan struct{}) (*service.Service, <-chan struct{}) {
	t.Helper()
	inflight := make(chan struct{}, 1)
	svc, err := service.New(cfg, service.WithLogger(nil), service.WithSignals(),
		service.WithHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			inflight <- struct{}{}
			<-release
			_, _ = io.WriteString(w, "done")
		})))
	if err != nil {
		t.Fatal(err)
	}
	return svc, inflight
}

// callSlow calls the slow handler and sends its answer, or its error.
func callSlow(addr string) <-chan string {
	out := make(chan string, 1)
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/slow")
		if err != nil {
			out <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- string(b)
	}()
	return out
}

// TestDrainFinishesCallsInFlight stops a service while a call is in
// flight: the call is answered, and Run returns nil once it is.
func TestDrainFinishesCallsInFlight(t *testing.T) {
	release := make(chan struct{})
	svc, inflight := slowService(t, quiet("orders"), release)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if svc.HTTPAddr() == "" {
			return io.ErrNoProgress
		}
		return nil
	})
	addr := svc.HTTPAddr()
	answer := callSlow(addr)
	<-inflight
	cancel()
	vitamintest.Eventually(t, 10*time.Second, func() error { // the drain closes the listener first
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return errors.New("still accepting connections")
		}
		return nil
	})
	close(release)
	if got := <-answer; got != "done" {
		t.Fatalf("the call in flight got %q, want its answer", got)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestDrainDeadlineClosesWhatIsLeft stops a service whose call in flight
// outlasts Shutdown.Drain: the connection is closed and Run says so.
func TestDrainDeadlineClosesWhatIsLeft(t *testing.T) {
	cfg := quiet("orders")
	cfg.Shutdown.Drain = 100 * time.Millisecond
	release := make(chan struct{})
	defer close(release)
	svc, inflight := slowService(t, cfg, release)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if svc.HTTPAddr() == "" {
			return io.ErrNoProgress
		}
		return nil
	})
	answer := callSlow(svc.HTTPAddr())
	<-inflight
	cancel()
	err := <-ran
	if err == nil || !strings.Contains(err.Error(), "service: drain: HTTP: context deadline exceeded; connections closed") {
		t.Fatalf("Run: %v, want the drain's deadline", err)
	}
	if got := <-answer; got == "done" {
		t.Fatal("the call outlasting the drain was answered, want its connection closed")
	}
}

// TestDrainEndsHealthWatches stops a service watched through
// grpc.health.v1 Watch: the watcher hears NOT_SERVING, its stream ends when
// the drain begins, and the drain does not wait for Shutdown.Drain.
func TestDrainEndsHealthWatches(t *testing.T) {
	cfg := quiet("orders")
	cfg.Shutdown.Drain = time.Minute
	svc, err := service.New(cfg, service.WithLogger(nil), service.WithSignals(), service.WithGRPC(func(*grpc.Server) {}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if svc.GRPCAddr() == "" {
			return io.ErrNoProgress
		}
		return nil
	})
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for want := healthpb.HealthCheckResponse_SERVING; ; {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("Watch: %v before %v", err, want)
		}
		if resp.Status != want {
			continue
		}
		if want == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		cancel() // serving: stop
		want = healthpb.HealthCheckResponse_NOT_SERVING
	}
	if _, err := watch.Recv(); err == nil {
		t.Fatal("Watch went on after NOT_SERVING, want it ended by the drain")
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
