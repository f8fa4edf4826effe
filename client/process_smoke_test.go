package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
)

// TestProcessBackendDiesForReal checks the fault tests' tool: a backend
// process answers, and after Kill its port refuses connections.
func TestProcessBackendDiesForReal(t *testing.T) {
	reg := newRegistry(t)
	p := startProcBackend(t, "grpc", "p1")
	register(t, reg, p.instance(svc, nil))
	conn, err := client.NewGRPC(context.Background(), svc, client.Config{}, client.WithWatcher(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := check(ctx, conn); err != nil {
		t.Fatalf("call to the backend process: %v", err)
	}
	p.Kill()
	if st := p.State(); st == nil || st.Success() {
		t.Fatalf("after Kill the process state is %v, want killed", st)
	}
}
