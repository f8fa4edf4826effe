package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
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
	"github.com/vitamin-go/vitamin/vitamintest"
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

// startChild runs childMain(mode) as a service instance in its own
// process (see vitamintest.Process) with env added to the environment.
// CONSUL_HTTP_ADDR is emptied: each child says which registry it uses.
// GORACE: no second of sleep at exit under -race, so that the exit times
// measured are the service's.
func startChild(t testing.TB, name, mode string, env ...string) *vitamintest.Process {
	t.Helper()
	return vitamintest.StartProcess(t, name, append([]string{"CONSUL_HTTP_ADDR=", childEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...)...)
}

// phases returns the stop phases c logged, as "name=took".
func phases(c *vitamintest.Process) []string {
	var out []string
	for _, l := range c.Lines() {
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
