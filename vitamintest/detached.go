package vitamintest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// Detached is a testing.TB for code that runs outside a test function, such
// as an Example or a TestMain, so that it can start the systems of this
// package. Helper, Cleanup, Failed, Log, Logf, Error, Errorf, Fatal, Fatalf,
// Skip, Skipf, Name and TempDir work; the other methods of testing.TB must
// not be called. Fatal and Skip panic with a *Stopped, which RunMain turns
// into an exit code. Close runs the cleanups, last registered first.
//
// Detached is safe for concurrent use.
type Detached struct {
	testing.TB // not set: only the methods below are called

	name     string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// Stopped is the panic value of Detached's Fatal and Skip methods.
type Stopped struct {
	Skip bool   // true for Skip, false for Fatal
	Msg  string // the message given
}

// Error returns the message.
func (s *Stopped) Error() string { return s.Msg }

// NewDetached returns a Detached named name (used for temporary
// directories and messages).
func NewDetached(name string) *Detached { return &Detached{name: name} }

// Close runs the registered cleanups, last first.
func (d *Detached) Close() {
	d.mu.Lock()
	cs := d.cleanups
	d.cleanups = nil
	d.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// RunMain runs setup with a Detached, then m's tests, then the cleanups,
// and returns the exit code, for a TestMain that starts a system shared by
// all of a package's tests:
//
//	func TestMain(m *testing.M) {
//		os.Exit(vitamintest.RunMain(m, func(tb testing.TB) { agent = vitamintest.StartConsul(tb) }))
//	}
//
// When setup skips (a missing dependency outside CI), no test runs and the
// code is 0; when it fails, the code is 1.
func RunMain(m interface{ Run() int }, setup func(tb testing.TB)) (code int) {
	d := NewDetached("main")
	defer d.Close()
	if stopped := catch(func() { setup(d) }); stopped != nil {
		fmt.Fprintln(os.Stderr, stopped.Msg)
		if stopped.Skip {
			return 0
		}
		return 1
	}
	code = m.Run()
	if d.Failed() {
		code = 1
	}
	return code
}

// catch runs f and returns the *Stopped it panicked with, if any.
func catch(f func()) (stopped *Stopped) {
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(*Stopped)
			if !ok {
				panic(r)
			}
			stopped = s
		}
	}()
	f()
	return nil
}

// Helper does nothing: there is no test log whose lines it could mark.
func (d *Detached) Helper() {}

// Name returns the name given to NewDetached.
func (d *Detached) Name() string { return d.name }

// Cleanup registers f to run on Close.
func (d *Detached) Cleanup(f func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cleanups = append(d.cleanups, f)
}

// Failed reports whether Error, Errorf, Fatal or Fatalf was called.
func (d *Detached) Failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// Log writes args to standard error.
func (d *Detached) Log(args ...any) { fmt.Fprintln(os.Stderr, args...) }

// Logf writes a formatted line to standard error.
func (d *Detached) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Error marks d failed and logs args.
func (d *Detached) Error(args ...any) {
	d.fail()
	d.Log(args...)
}

// Errorf marks d failed and logs a formatted line.
func (d *Detached) Errorf(format string, args ...any) {
	d.fail()
	d.Logf(format, args...)
}

// Fatal marks d failed and panics with a *Stopped.
func (d *Detached) Fatal(args ...any) {
	d.fail()
	panic(&Stopped{Msg: fmt.Sprint(args...)})
}

// Fatalf marks d failed and panics with a *Stopped.
func (d *Detached) Fatalf(format string, args ...any) {
	d.fail()
	panic(&Stopped{Msg: fmt.Sprintf(format, args...)})
}

// Skip panics with a *Stopped whose Skip is true.
func (d *Detached) Skip(args ...any) { panic(&Stopped{Skip: true, Msg: fmt.Sprint(args...)}) }

// Skipf panics with a *Stopped whose Skip is true.
func (d *Detached) Skipf(format string, args ...any) {
	panic(&Stopped{Skip: true, Msg: fmt.Sprintf(format, args...)})
}

// TempDir returns a new directory, removed on Close.
func (d *Detached) TempDir() string {
	dir, err := os.MkdirTemp("", "vitamin-"+d.name+"-")
	if err != nil {
		d.Fatalf("vitamintest: temporary directory: %v", err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (d *Detached) fail() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failed = true
}
