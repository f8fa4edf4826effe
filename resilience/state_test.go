package resilience_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
)

// An operator forces a breaker open, then closed again; Breakers shows
// its state against its thresholds.
func ExampleRegistry_ForceCircuit() {
	reg, _ := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 20, FailureRate: 0.5, OpenFor: time.Minute},
	}})
	reg.For("payments", "")

	_ = reg.ForceCircuit("payments", true)
	b := reg.Breakers()[0]
	fmt.Println(b.Policy, b.State, b.FailureRateThreshold)
	_ = reg.ForceCircuit("payments", false)
	fmt.Println(reg.Breakers()[0].State)
	fmt.Println(errors.Is(reg.ForceCircuit("nothing", true), resilience.ErrNoBreaker))
	// Output:
	// payments open 0.5
	// closed
	// true
}

func TestBreakersLeaveOutExecutorsWithoutBreaker(t *testing.T) {
	reg, err := resilience.NewRegistry(resilience.Config{
		Default:   resilience.Policy{Timeout: time.Second},
		Overrides: map[string]resilience.Policy{"payments": {CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 10, FailureRate: 0.5, OpenFor: time.Second}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg.For("orders", "")
	reg.For("payments", "")
	if bs := reg.Breakers(); len(bs) != 1 || bs[0].Policy != "payments" || bs[0].State != "closed" || bs[0].Since.IsZero() {
		t.Fatalf("breakers %+v: want payments alone, closed, with a time in state", bs)
	}
	if err := reg.ForceCircuit("orders", true); !errors.Is(err, resilience.ErrNoBreaker) {
		t.Errorf("ForceCircuit of an executor without a breaker: %v, want ErrNoBreaker", err)
	}
}
