package service_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/service"
)

// childEnv, set in the environment of this test binary, makes it run one
// service instance instead of the tests (see childMain): each instance of
// the process tests is its own OS process, stopped by signals as
// Kubernetes stops a pod.
const childEnv = "VITAMIN_SERVICE_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	goleak.VerifyTestMain(m)
}

// child is a service instance in its own process: this test binary run
// again with childEnv set. Its standard output (its log and the lines
// childMain prints) is kept, and shown when the test fails. It is killed
// when the test ends, and dies with the test process.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited

	mu    sync.Mutex
	lines []string
	seen  *sync.Cond
}

// startChild runs childMain(mode) in a new process with env added to the
// environment (CONSUL_HTTP_ADDR removed: each child says which registry it
// uses).
func startChild(t testing.TB, name, mode string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_HTTP_ADDR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// GORACE: no second of sleep at exit under -race, so that the exit
	// times measured are the service's.
	cmd.Env = append(cmd.Env, append([]string{childEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	c.seen = sync.NewCond(&c.mu)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.seen.Broadcast()
			c.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		c.mu.Lock()
		c.seen.Broadcast()
		c.mu.Unlock()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, strings.Join(c.output(), "\n"))
		}
	})
	return c
}

func (c *child) output() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// await waits until the child prints a line that starts with prefix, or
// contains it when prefix starts with a space, and returns the rest of
// it; it fails the test if the child exits first or the timeout passes.
func (c *child) await(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.AfterFunc(timeout, func() { c.mu.Lock(); c.seen.Broadcast(); c.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; ; {
		for ; i < len(c.lines); i++ {
			if strings.HasPrefix(prefix, " ") {
				if _, rest, ok := strings.Cut(c.lines[i], prefix); ok {
					return strings.TrimSpace(rest)
				}
			} else if rest, ok := strings.CutPrefix(c.lines[i], prefix); ok {
				return strings.TrimSpace(rest)
			}
		}
		select {
		case <-c.done:
			t.Fatalf("%s exited before printing %q", c.name, prefix)
		default:
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s did not print %q within %v", c.name, prefix, timeout)
		}
		c.seen.Wait()
	}
}

// signal sends sig to the child.
func (c *child) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", c.name, err)
	}
}

// wait waits until the child exits and returns its exit code.
func (c *child) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", c.name, timeout)
		return 0
	}
}

// phases returns the stop phases the child logged, as "name=took".
func (c *child) phases() []string {
	var out []string
	for _, l := range c.output() {
		if !strings.Contains(l, "stop phase done") && !strings.Contains(l, `msg="service: stopped"`) {
			continue
		}
		name, took := "total", ""
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "phase="); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(f, "took="); ok {
				took = v
			}
		}
		out = append(out, name+"="+took)
	}
	return out
}

// The child's settings, from its environment.
const (
	envID     = "VITAMIN_SERVICE_ID"
	envConsul = "VITAMIN_SERVICE_CONSUL"
	envDelay  = "VITAMIN_SERVICE_DELAY"  // how long a call takes
	envDrain  = "VITAMIN_SERVICE_DRAIN"  // Shutdown.Drain
	envNATS   = "VITAMIN_SERVICE_NATS"   // the broker, for "consume"
	envEffect = "VITAMIN_SERVICE_EFFECT" // the file each handled message appends a line to
	envSay    = "VITAMIN_SERVICE_SAY"    // print "WORKING" when a call starts
)

// Stream, subject and durable of the consumer test.
const (
	testStream  = "SERVICE_TEST"
	testSubject = "service.test.work"
)

// childMain runs one service instance and returns its exit code:
//   - "serve": HTTP (GET /work) and gRPC (vitamin.test.Echo/Check), each
//     call taking envDelay, registered in the Consul agent at envConsul;
//     it prints "READY <http addr> <grpc addr>" once started;
//   - "abrupt": the same, but on SIGTERM it exits at once, with status 3,
//     as soon as a gRPC call is in flight (so that a call is always cut);
//   - "consume": a consumer of testSubject on the broker at envNATS whose
//     handler prints "HANDLING <msg id>", works for envDelay, then appends
//     the message ID to envEffect.
func childMain(mode string) int {
	delay, _ := time.ParseDuration(os.Getenv(envDelay))
	drain, _ := time.ParseDuration(os.Getenv(envDrain))
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	cfg := service.Config{
		Name:         "roll",
		InstanceID:   os.Getenv(envID),
		HTTPAddr:     "127.0.0.1:0",
		GRPCAddr:     "127.0.0.1:0",
		Check:        service.Check{Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond},
		Consul:       service.Consul{Address: os.Getenv(envConsul)},
		StartTimeout: 20 * time.Second,
		Shutdown:     service.Shutdown{Propagation: 500 * time.Millisecond, Drain: drain},
	}
	opts := []service.Option{service.WithLogger(log)}
	var inflight atomic.Int64
	var dying atomic.Bool // "abrupt" got SIGTERM: the next call in flight is cut
	// work is a call's work; a gRPC call is the one "abrupt" cuts (an
	// HTTP GET cut short may be retried by the caller's transport).
	say := os.Getenv(envSay) != ""
	work := func(ctx context.Context, cut bool) {
		if say {
			fmt.Println("WORKING")
		}
		if cut {
			inflight.Add(1)
			defer inflight.Add(-1)
			if dying.Load() {
				os.Exit(3)
			}
		}
		select { // the call's work
		case <-time.After(delay):
		case <-ctx.Done():
		}
	}
	var svc *service.Service
	switch mode {
	case "serve", "abrupt":
		opts = append(opts,
			service.WithHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				work(r.Context(), false)
				_, _ = io.WriteString(w, cfg.InstanceID)
			})),
			service.WithGRPC(func(s *grpc.Server) {
				desc := healthpb.Health_ServiceDesc
				desc.ServiceName = echoService
				s.RegisterService(&desc, echo{work: work})
			}),
			service.WithStartHook(func(context.Context) error {
				fmt.Printf("READY %s %s\n", svc.HTTPAddr(), svc.GRPCAddr())
				return nil
			}),
		)
	case "consume":
		cfg.Name = "consume"
		nc, err := nats.Connect(os.Getenv(envNATS))
		if err != nil {
			fmt.Println("nats:", err)
			return 1
		}
		js, err := jetstream.New(nc)
		if err != nil {
			fmt.Println("jetstream:", err)
			return 1
		}
		c, err := messaging.NewConsumer(context.Background(), js,
			messaging.ConsumerConfig{Stream: testStream, Durable: "effects", Subjects: []string{testSubject}, AckWait: 10 * time.Second},
			func(ctx context.Context, m *messaging.Message) error {
				fmt.Printf("HANDLING %s\n", m.ID)
				work(ctx, false)
				f, err := os.OpenFile(os.Getenv(envEffect), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(f, m.ID)
				return errors.Join(err, f.Close())
			}, messaging.WithLogger(log))
		if err != nil {
			fmt.Println("consumer:", err)
			return 1
		}
		opts = append(opts, service.WithConsumer(c),
			service.WithCloser(service.CloseFunc(func(context.Context) error { nc.Close(); return nil })),
			service.WithStartHook(func(context.Context) error { fmt.Println("READY"); return nil }))
	default:
		fmt.Println("unknown child mode", mode)
		return 1
	}
	if mode == "abrupt" {
		opts = append(opts, service.WithSignals())
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		go func() {
			<-sig
			dying.Store(true)
			if inflight.Load() > 0 {
				os.Exit(3)
			}
		}()
	}
	svc, err := service.New(cfg, opts...)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := svc.Run(context.Background()); err != nil {
		fmt.Println("RUN", err)
		return 1
	}
	return 0
}

const echoService = "vitamin.test.Echo"

// echo answers vitamin.test.Echo/Check (the Health service's shape, under
// another name) after its work.
type echo struct {
	healthpb.UnimplementedHealthServer
	work func(context.Context, bool)
}

func (e echo) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	e.work(ctx, true)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}
