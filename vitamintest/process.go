package vitamintest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is the test binary run again as an OS process of its own, for
// tests whose faults are a process's: SIGKILL, SIGSTOP, SIGTERM and real
// restarts. The package's TestMain runs the child's code instead of the
// tests when it finds the environment variable the test passes (see
// StartProcess). The child's standard output and error are kept line by
// line, and shown when the test fails. The process is killed when the test
// ends, and dies with the test process. It is safe for concurrent use.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited

	mu    sync.Mutex
	lines []string
	seen  *sync.Cond
}

// StartProcess runs the test binary again with no tests selected and env
// ("KEY=value") added to this process's environment; an entry "KEY=" gives
// KEY an empty value. name labels the process in failures and logs.
func StartProcess(t testing.TB, name string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("vitamintest: start process %s: %v", name, err)
	}
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	p.seen = sync.NewCond(&p.mu)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.seen.Broadcast()
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		p.mu.Lock()
		p.seen.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, strings.Join(p.Lines(), "\n"))
		}
	})
	return p
}

// Lines returns what the process has printed so far, a line each.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Await waits until the process prints a line that starts with prefix, or
// contains it when prefix starts with a space, and returns the rest of
// that line, trimmed. It fails the test if the process exits first or the
// timeout passes.
func (p *Process) Await(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.AfterFunc(timeout, func() { p.mu.Lock(); p.seen.Broadcast(); p.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; ; {
		for ; i < len(p.lines); i++ {
			if strings.HasPrefix(prefix, " ") {
				if _, rest, ok := strings.Cut(p.lines[i], prefix); ok {
					return strings.TrimSpace(rest)
				}
			} else if rest, ok := strings.CutPrefix(p.lines[i], prefix); ok {
				return strings.TrimSpace(rest)
			}
		}
		select {
		case <-p.done:
			t.Fatalf("vitamintest: %s exited before printing %q", p.name, prefix)
		default:
		}
		if time.Since(start) > timeout {
			t.Fatalf("vitamintest: %s did not print %q within %v", p.name, prefix, timeout)
		}
		p.seen.Wait()
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("vitamintest: signal %s: %v", p.name, err)
	}
}

// Kill sends SIGKILL, as a crash or the OOM killer does, and waits until
// the process is gone; a frozen process dies too. Killing a process that
// has exited does nothing.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Freeze sends SIGSTOP: the process keeps its connections and answers
// nothing, like a process stuck in a long pause.
func (p *Process) Freeze() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw sends SIGCONT to a frozen process.
func (p *Process) Thaw() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// Wait waits until the process exits and returns its exit code; it fails
// the test if the timeout passes first.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("vitamintest: %s did not exit within %v", p.name, timeout)
		return 0
	}
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Name is the name the process was started with.
func (p *Process) Name() string { return p.name }

// State is how the process exited, once Done is closed; nil before.
func (p *Process) State() *os.ProcessState {
	select {
	case <-p.done:
		return p.cmd.ProcessState
	default:
		return nil
	}
}
