package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// The service runs the admin listener from the start of its start to the
// end of its stop, with its health, build, metrics and what WithAdmin adds.
func TestAdminListenerFollowsTheService(t *testing.T) {
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	policies, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, OpenFor: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	policies.For("payments", "")
	svc, err := service.New(service.Config{
		Name: "orders", Version: "1.2.3", HTTPAddr: "127.0.0.1:0",
		Admin:    admin.Config{Addr: "127.0.0.1:0", Profiling: admin.Profiling{Disabled: true}, MemoryLimit: admin.MemoryLimit{Disabled: true}},
		Shutdown: service.Shutdown{Propagation: -1},
	}, service.WithRegistrar(reg), service.WithLogger(nil), service.WithSignals(), service.WithAdmin(admin.WithPolicies(policies)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	var addr string
	eventually(t, 10*time.Second, "the admin listener is bound", func() bool { addr = svc.AdminAddr(); return addr != "" })
	var st admin.State
	eventually(t, 10*time.Second, "the admin API says ready", func() bool {
		resp, err := http.Get("http://" + addr + admin.PathState)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		st = admin.State{}
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.Health.Ready
	})
	if st.Build.Service != "orders" || st.Build.Version != "1.2.3" || st.Build.Instance == "" || len(st.Breakers) != 1 {
		t.Errorf("state %+v: want the service's build and the breaker of payments", st)
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("the admin listener still accepts connections after Run returned")
	}
}

// A configured admin address that is taken fails the start, naming it.
func TestAdminAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	svc, err := service.New(service.Config{Name: "orders", HTTPAddr: "127.0.0.1:0",
		Admin: admin.Config{Addr: ln.Addr().String()}},
		service.WithLogger(nil), service.WithSignals())
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Run(context.Background())
	if err == nil || !errors.Is(err, errAddrInUse) {
		t.Fatalf("Run: %v, want the admin address in use", err)
	}
}

func TestAdminConfigInvalid(t *testing.T) {
	_, err := service.New(service.Config{Name: "orders", Admin: admin.Config{Addr: "nowhere"}})
	var fe *service.FieldError
	if !errors.Is(err, service.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != "Admin.Addr" {
		t.Fatalf("New: %v, want a field error naming Admin.Addr", err)
	}
}

const errAddrInUse = syscall.EADDRINUSE

// eventually waits until cond holds, for at most d (see
// vitamintest.Eventually).
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	vitamintest.Eventually(t, d, func() error {
		if cond() {
			return nil
		}
		return errors.New(what)
	})
}
