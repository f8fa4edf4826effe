package consul_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/internal/testenv"
)

// agent is a Consul dev agent shared by the tests and examples of this
// package that do not stop it; each uses its own KV prefix. Tests that
// stop or reconfigure an agent start their own.
var agent *testenv.Consul

func TestMain(m *testing.M) { goleak.VerifyTestMain(withAgent{m}) }

// withAgent starts the shared agent around the tests, so that it has
// stopped (and its goroutines ended) before goleak looks.
type withAgent struct{ m *testing.M }

func (w withAgent) Run() (code int) {
	tb := &mainTB{}
	defer func() {
		for i := len(tb.cleanups) - 1; i >= 0; i-- {
			tb.cleanups[i]()
		}
		if r := recover(); r != nil {
			switch r := r.(type) {
			case skipped:
				fmt.Fprintln(os.Stderr, "config/consul: skipped:", string(r))
				code = 0
			case fatal:
				fmt.Fprintln(os.Stderr, "config/consul:", string(r))
				code = 1
			default:
				panic(r)
			}
		}
		if tb.failed {
			code = 1
		}
	}()
	agent = testenv.StartConsul(tb)
	return w.m.Run()
}

// mainTB lets testenv.StartConsul run in TestMain, where there is no
// *testing.T: internal/testenv only starts agents for a testing.TB.
// Methods StartConsul does not call are left to the nil embedded TB.
type mainTB struct {
	testing.TB
	cleanups []func()
	failed   bool
}

type (
	skipped string
	fatal   string
)

func (t *mainTB) Helper()                 {}
func (t *mainTB) Cleanup(f func())        { t.cleanups = append(t.cleanups, f) }
func (t *mainTB) Failed() bool            { return t.failed }
func (t *mainTB) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (t *mainTB) Errorf(f string, a ...any) {
	t.failed = true
	t.Logf(f, a...)
}
func (t *mainTB) Fatalf(f string, a ...any) {
	t.failed = true
	panic(fatal(fmt.Sprintf(f, a...)))
}
func (t *mainTB) Skipf(f string, a ...any) { panic(skipped(fmt.Sprintf(f, a...))) }
