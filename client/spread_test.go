package client_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/client"
)

// spreadCalls is the number of calls of the nine-instance spread test:
// VITAMIN_CLIENT_SPREAD_CALLS, default 10,000 (the figure is
// 100,000, which takes about a minute under -race on a small machine).
func spreadCalls(t testing.TB) int {
	if s := os.Getenv("VITAMIN_CLIENT_SPREAD_CALLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("VITAMIN_CLIENT_SPREAD_CALLS=%q is not a positive number", s)
		}
		return n
	}
	return 10_000
}

// spreadDelay is the service time of every instance in the spread tests:
// long enough that it, not the noise of a loaded machine, makes up most
// of a call's latency, so that the instances are identical.
const spreadDelay = time.Millisecond

// TestSequentialSpread makes 1,000 calls one after the other over two
// identical instances, from a client that starts cold (its first call to
// each instance also sets up the connection): each instance must get at
// least 30% of them. A balancer that keeps an instance expensive on one
// slow sample, while it gets no call to prove otherwise, gives one of them
// almost all calls.
func TestSequentialSpread(t *testing.T) {
	const n = 1000
	for _, tr := range []struct {
		name  string
		start func(testing.TB, string) *backend
		call  func(t *testing.T, w client.Option) func() error
	}{
		{"grpc", startGRPC, func(t *testing.T, w client.Option) func() error {
			conn := dial(t, client.Config{}, w, client.WithoutTracing())
			return func() error { return checkWithin(conn, 10*time.Second) }
		}},
		{"http", startHTTP, func(t *testing.T, w client.Option) func() error {
			hc := newHTTP(t, client.Config{}, w, client.WithoutTracing())
			return func() error { return getOK(hc) }
		}},
	} {
		t.Run(tr.name, func(t *testing.T) {
			reg := newRegistry(t)
			bs := startFleet(t, reg, tr.start, spreadDelay, "a", "b")
			call := tr.call(t, client.WithWatcher(reg))
			for i := range n {
				if err := call(); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			for _, b := range bs {
				if got := b.calls.Load(); got < n*30/100 {
					t.Errorf("instance %s got %d of %d sequential calls, want at least 30%%: %v", b.id, got, n, counts(bs...))
				}
			}
			t.Logf("shares of %d sequential calls: %v", n, counts(bs...))
		})
	}
}

// TestConcurrentSpread makes calls from 8 goroutines over nine identical
// instances: none may get less than half the mean share.
func TestConcurrentSpread(t *testing.T) {
	n := spreadCalls(t)
	reg := newRegistry(t)
	ids := make([]string, 9)
	for i := range ids {
		ids[i] = "i" + itoa(i)
	}
	bs := startFleet(t, reg, startGRPC, spreadDelay, ids...)
	conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing())
	if failed, err := load(conn, 8, n, nil); failed > 0 {
		t.Fatalf("%d of %d calls failed: %v", failed, n, err)
	}
	mean := float64(n) / float64(len(bs))
	lowest := int64(n)
	for _, b := range bs {
		got := b.calls.Load()
		lowest = min(lowest, got)
		if float64(got) < mean/2 {
			t.Errorf("instance %s got %d of %d calls, less than half the mean %.0f: %v", b.id, got, n, mean, counts(bs...))
		}
	}
	t.Logf("%d calls over 9 instances: lowest share %.2f of the mean; %v", n, float64(lowest)/mean, counts(bs...))
}

func checkWithin(conn *grpc.ClientConn, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return check(ctx, conn)
}

func getOK(hc *http.Client) error {
	code, _, err := get(hc, http.MethodGet, "http://orders/x", nil)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	return err
}
