package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
)

func TestStatus(t *testing.T) {
	policies, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, OpenFor: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	policies.For("payments", "")
	if err := policies.ForceCircuit("payments", true); err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Profiling: admin.Profiling{Disabled: true}, MemoryLimit: admin.MemoryLimit{Disabled: true}},
		admin.WithPolicies(policies), admin.WithBuild("orders", "orders-1", "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())

	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", srv.Addr()}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	for _, want := range []string{"orders  instance orders-1  version 1.2.3", "health: ready", "payments", "OPEN"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	if code := run([]string{"status", "-json", "http://" + srv.Addr()}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `"api_version": "v1"`) {
		t.Errorf("status -json: code %d, output %s", code, stdout.String())
	}
	if code := run([]string{"status"}, &stdout, &stderr); code != 2 {
		t.Errorf("status without ADDR: exit code %d, want 2", code)
	}
	stderr.Reset()
	if code := run([]string{"status", "-timeout", "2s", "127.0.0.1:1"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "vitamin status:") {
		t.Errorf("status of nothing: exit code %d, stderr %q", code, stderr.String())
	}
}
