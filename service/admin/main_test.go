package admin_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chromium returns the path of the chromium binary, or stops the test
// (skipped, or failed under CI) naming the script that installs it.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	vitamintest.Missing(t, "chromium", "scripts/chromium")
	return ""
}

// downstream is a real gRPC server on 127.0.0.1 whose one method,
// /downstream.Orders/Get, answers UNAVAILABLE while fail is set.
type downstream struct {
	addr  *net.TCPAddr
	fail  atomic.Bool
	calls atomic.Int64
	srv   *grpc.Server
	wg    sync.WaitGroup
}

const method = "/downstream.Orders/Get"

func startDownstream(t *testing.T) *downstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &downstream{addr: ln.Addr().(*net.TCPAddr)}
	d.srv = grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		d.calls.Add(1)
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if d.fail.Load() {
			return status.Error(codes.Unavailable, "failing on purpose")
		}
		return stream.SendMsg(&emptypb.Empty{})
	}))
	d.wg.Go(func() { _ = d.srv.Serve(ln) })
	t.Cleanup(func() { d.srv.Stop(); d.wg.Wait() })
	return d
}

// register registers the server as instance id of service in r.
func (d *downstream) register(t *testing.T, r discovery.Registrar, service, id string) {
	t.Helper()
	_, err := r.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
		ID: id, Service: service, Address: "127.0.0.1", Port: d.addr.Port,
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// load calls method on conn from two goroutines until stop is called.
type invoker interface {
	Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error
}

func load(conn invoker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				_ = conn.Invoke(cctx, method, &emptypb.Empty{}, &emptypb.Empty{})
				ccancel()
				if ctx.Err() == nil {
					t := time.NewTimer(2 * time.Millisecond) // pace the load generator
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
					}
				}
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// eventually waits until cond holds, for at most d (see
// vitamintest.Eventually); show, if given, says what was seen last.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool, show ...func() string) {
	t.Helper()
	vitamintest.Eventually(t, d, func() error {
		if cond() {
			return nil
		}
		msg := what
		for _, f := range show {
			msg += ": " + f()
		}
		return errors.New(msg)
	})
}

func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("VITAMIN_TEST_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir() + "/vitamin-test-artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
