package consul_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// agent is a Consul dev agent shared by the tests and examples of this
// package that do not stop it; each uses its own KV prefix. Tests that
// stop or reconfigure an agent start their own.
var agent *vitamintest.Consul

func TestMain(m *testing.M) { goleak.VerifyTestMain(withAgent{m}) }

type withAgent struct{ m *testing.M }

// Run starts the shared agent around the tests, so that it has stopped (and
// its goroutines ended) before goleak looks.
func (w withAgent) Run() int {
	return vitamintest.RunMain(w.m, func(tb testing.TB) { agent = vitamintest.StartConsul(tb) })
}
