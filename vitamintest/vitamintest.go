package vitamintest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Missing stops the test because a dependency is not available: it fails
// under CI (CI=true) and skips elsewhere. what names the dependency and how
// the command that provides it.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s is missing (CI=true, so this fails): run %s", what, how)
	}
	t.Skipf("%s is missing: run %s", what, how)
}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked. Another
// process may take it before the caller binds it; helpers that use it retry.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vitamintest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// repoRoot returns the root of the Vitamin repository: the nearest parent
// of the working directory that holds the module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isVitaminModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vitamintest: no go.mod of github.com/vitamin-go/vitamin above the working directory")
		}
		dir = parent
	}
}

func isVitaminModule(gomod []byte) bool {
	const want = "module github.com/vitamin-go/vitamin\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// Eventually polls cond every few milliseconds until it returns nil or the
// timeout passes, and then fails the test with cond's last error. It is the
// way tests wait: never on a fixed sleep.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// poll calls cond every few milliseconds until it returns nil, or until ctx
// ends (cond may end it), and then returns cond's last error.
func poll(ctx context.Context, cond func() error) error {
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// EventuallyProgressing is Eventually for work whose duration is the
// machine's, not the behaviour's (thousands of messages, under the race
// detector, on a loaded machine): it polls cond until it returns nil, and
// fails the test only when the count cond returns has not grown for
// stall, with cond's last error.
func EventuallyProgressing(t testing.TB, stall time.Duration, cond func() (n int, err error)) {
	t.Helper()
	if err := progressing(stall, cond); err != nil {
		t.Fatal(err)
	}
}

func progressing(stall time.Duration, cond func() (int, error)) error {
	ctx, stalled := context.WithCancel(context.Background())
	defer stalled()
	best, since := 0, time.Now()
	err := poll(ctx, func() error {
		n, err := cond()
		if err != nil {
			if n > best {
				best, since = n, time.Now()
			} else if time.Since(since) > stall {
				stalled()
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("no progress for %v, stopped at %d: %w", stall, best, err)
	}
	return nil
}

// attachOnFailure adds what l holds to the test log if the test failed.
func attachOnFailure(t testing.TB, name string, l *Buffer) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s log ---\n%s--- end of %s log ---", name, l.String(), name)
		}
	})
}
