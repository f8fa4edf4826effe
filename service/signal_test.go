package service_test

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecondSignalExitsAtOnce sends SIGTERM to an instance that drains a
// call of a minute (Shutdown.Drain a minute too), then SIGTERM again: the
// process exits at once, with status 1, without finishing the drain.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	c := startChild(t, "slow", "serve", envDelay+"=1m", envDrain+"=1m", envSay+"=1")
	addr := strings.Fields(c.Await(t, "READY", 30*time.Second))[0]
	called := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/work", nil)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		called <- err
	}()
	c.Await(t, "WORKING", 30*time.Second)
	c.Signal(t, syscall.SIGTERM)
	c.Await(t, " phase=propagation", 30*time.Second) // draining now, for a minute
	sent := time.Now()
	c.Signal(t, syscall.SIGTERM)
	if code := c.Wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit status %d after the second SIGTERM, want 1", code)
	}
	t.Logf("second SIGTERM → exit %v", time.Since(sent).Round(time.Millisecond))
	c.Await(t, ` msg="service: second signal: exiting at once"`, time.Second)
	for _, l := range c.Lines() {
		if strings.Contains(l, `msg="service: stopped"`) {
			t.Fatalf("the service finished its stop after the second signal: %s", l)
		}
	}
	if err := <-called; err == nil {
		t.Fatal("the call in flight was answered, want it cut by the exit")
	}
}
