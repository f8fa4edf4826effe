package client_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// freshProcess is set in the environment of the test binary that
// TestNewGRPCBesideOtherClients runs again by itself.
const freshProcess = "VITAMIN_CLIENT_FRESH_PROCESS"

// TestNewGRPCBesideOtherClients shows that the first NewGRPC of a process
// does not race with grpc.NewClient calls elsewhere in it: both read
// grpc-go's balancer registry, which only init-time registration may
// write. It runs in a fresh copy of the test binary, so that the NewGRPC
// calls there are the process's first; under -race a data race fails that
// process.
func TestNewGRPCBesideOtherClients(t *testing.T) {
	if os.Getenv(freshProcess) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNewGRPCBesideOtherClients$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), freshProcess+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "DATA RACE") || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("the fresh process failed (%v):\n%s", err, out)
		}
		return
	}

	if balancer.Get(client.BalancerName) == nil {
		t.Fatalf("%s is not registered before the first NewGRPC", client.BalancerName)
	}
	reg := newRegistry(t)
	b := startGRPC(t, "a")
	register(t, reg, b.instance(svc, nil))
	addr := b.instance(svc, nil).Endpoint()

	// Plain grpc-go clients made while NewGRPC runs, each parsing a service
	// config that names round_robin (a balancer registry lookup), then
	// calling the same server.
	start := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 10 {
				conn, err := grpc.NewClient("passthrough:///"+addr,
					grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
				if err == nil {
					err = check(context.Background(), conn)
					_ = conn.Close()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	for range 5 {
		conn := dial(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing())
		vitamintest.Eventually(t, 5*time.Second, func() error { return check(context.Background(), conn) })
		_ = conn.Close()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("plain grpc-go client: %v", err)
	}
}
