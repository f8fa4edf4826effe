package client_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/discovery"
)

// childEnv, set in the environment of this test binary, makes it serve as
// a backend process instead of running tests: "grpc" or "http".
const childEnv = "VITAMIN_CLIENT_BACKEND"

// procBackend is a backend in its own OS process: this test binary run
// again with childEnv set, serving on a loopback port. Fault tests kill it
// (SIGKILL) or freeze it (SIGSTOP) as production faults do. It is killed
// when the test ends, and dies with the test process.
type procBackend struct {
	id   string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	// calls counts the calls it answered, as it reported them; read it
	// after Kill or at the end of the test.
	calls atomic.Int64
}

// startProcBackend starts a backend process of kind "grpc" (the standard
// health service and vitamin.test.Echo, as startGRPC) or "http" (200 with
// its ID, as startHTTP) and waits until it listens.
func startProcBackend(t testing.TB, kind, id string) *procBackend {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+kind, "VITAMIN_CLIENT_BACKEND_ID="+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start backend process %s: %v", id, err)
	}
	p := &procBackend{id: id, cmd: cmd, done: make(chan struct{})}
	lines := bufio.NewScanner(out)
	port := make(chan int, 1)
	go func() {
		defer close(p.done)
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			switch {
			case len(f) == 2 && f[0] == "PORT":
				n, _ := strconv.Atoi(f[1])
				port <- n
			case len(f) == 2 && f[0] == "CALLS":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				p.calls.Store(n)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
	}()
	t.Cleanup(p.Kill)
	select {
	case p.port = <-port:
	case <-p.done:
		t.Fatalf("backend process %s exited before it listened", id)
	case <-time.After(30 * time.Second):
		t.Fatalf("backend process %s did not listen within 30s", id)
	}
	return p
}

func (p *procBackend) instance(service string, meta map[string]string) discovery.Instance {
	return discovery.Instance{ID: p.id, Service: service, Address: "127.0.0.1", Port: p.port, Meta: meta}
}

// Kill sends SIGKILL, as a crash or the OOM killer does, and waits until
// the process is gone. Killing a dead process does nothing.
func (p *procBackend) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a frozen process dies too
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Freeze sends SIGSTOP: the process keeps its connections and answers
// nothing, like a process stuck in a long pause.
func (p *procBackend) Freeze() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw sends SIGCONT to a frozen process.
func (p *procBackend) Thaw() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// serveChild is the backend process: it serves kind on a free loopback
// port, prints "PORT n", prints "CALLS n" every 100ms, and exits on
// SIGTERM or when its parent's pipe closes.
func serveChild(kind string) int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend process:", err)
		return 1
	}
	id := os.Getenv("VITAMIN_CLIENT_BACKEND_ID")
	var calls atomic.Int64
	switch kind {
	case "grpc":
		s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			calls.Add(1)
			return h(ctx, req)
		}))
		hs := health.NewServer()
		healthpb.RegisterHealthServer(s, hs)
		echo := healthpb.Health_ServiceDesc
		echo.ServiceName = "vitamin.test.Echo"
		s.RegisterService(&echo, hs)
		go func() { _ = s.Serve(lis) }()
	case "http":
		go func() {
			_ = http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
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
	tick := time.NewTicker(100 * time.Millisecond)
	for {
		select {
		case <-sig:
			return 0
		case <-tick.C:
			if _, err := fmt.Printf("CALLS %d\n", calls.Load()); err != nil {
				return 0 // the parent is gone
			}
		}
	}
}
