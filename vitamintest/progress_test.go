package vitamintest

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// A wait that keeps progressing outlasts its stall bound; one that stops
// progressing fails with the condition's last error.
func TestProgressing(t *testing.T) {
	t.Run("steady progress longer than the stall bound", func(t *testing.T) {
		start, n := time.Now(), 0
		err := progressing(50*time.Millisecond, func() (int, error) {
			n++
			if time.Since(start) < 300*time.Millisecond {
				return n, errors.New("not yet")
			}
			return n, nil
		})
		if err != nil {
			t.Fatalf("progressing: %v, want nil", err)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		stuck := errors.New("7 of 10 done")
		n := 0
		err := progressing(50*time.Millisecond, func() (int, error) {
			n = min(n+1, 7)
			return n, stuck
		})
		if !errors.Is(err, stuck) || !strings.Contains(err.Error(), "no progress for 50ms, stopped at 7") {
			t.Fatalf("progressing: %v, want no progress for 50ms, stopped at 7, wrapping %v", err, stuck)
		}
	})
}
