package client_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// childEnv, set in the environment of this test binary, makes it serve as
// a backend process instead of running tests: "grpc" or "http".
const childEnv = "VITAMIN_CLIENT_BACKEND"

// procBackend is a backend in its own OS process (see
// vitamintest.Process), serving on a loopback port. Fault tests kill it
// (SIGKILL) or freeze it (SIGSTOP) as production faults do.
type procBackend struct {
	*vitamintest.Process
	id   string
	port int
}

// startProcBackend starts a backend process of kind "grpc" (the standard
// health service and vitamin.test.Echo, as startGRPC) or "http" (200 with
// its ID, as startHTTP) and waits until it listens.
func startProcBackend(t testing.TB, kind, id string) *procBackend {
	t.Helper()
	p := vitamintest.StartProcess(t, "backend process "+id, childEnv+"="+kind, "VITAMIN_CLIENT_BACKEND_ID="+id)
	port, err := strconv.Atoi(p.Await(t, "PORT ", 30*time.Second))
	if err != nil {
		t.Fatalf("backend process %s: %v", id, err)
	}
	return &procBackend{Process: p, id: id, port: port}
}

func (p *procBackend) instance(service string, meta map[string]string) discovery.Instance {
	return discovery.Instance{ID: p.id, Service: service, Address: "127.0.0.1", Port: p.port, Meta: meta}
}

// serveChild is the backend process: it serves kind on a free loopback
// port, prints "PORT n", and exits on SIGTERM (or with its parent).
func serveChild(kind string) int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend process:", err)
		return 1
	}
	id := os.Getenv("VITAMIN_CLIENT_BACKEND_ID")
	switch kind {
	case "grpc":
		s := grpc.NewServer()
		hs := health.NewServer()
		healthpb.RegisterHealthServer(s, hs)
		echo := healthpb.Health_ServiceDesc
		echo.ServiceName = "vitamin.test.Echo"
		s.RegisterService(&echo, hs)
		go func() { _ = s.Serve(lis) }()
	case "http":
		go func() {
			_ = http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, id)
			}))
		}()
	default:
		fmt.Fprintln(os.Stderr, "backend process: unknown kind", kind)
		return 1
	}
	fmt.Printf("PORT %d\n", lis.Addr().(*net.TCPAddr).Port)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}
