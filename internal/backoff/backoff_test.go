package backoff_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelayDoublesUpToMaxWithEqualJitter(t *testing.T) {
	b := backoff.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		n    int
		full time.Duration
	}{{0, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {100, time.Second}} {
		for range 200 {
			d := b.Delay(tc.n)
			if d < tc.full/2 || d > tc.full {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", tc.n, d, tc.full/2, tc.full)
			}
		}
		exact := b
		exact.NoJitter = true
		if d := exact.Delay(tc.n); d != tc.full {
			t.Errorf("Delay(%d) without jitter = %v, want %v", tc.n, d, tc.full)
		}
	}
}

func TestDelaySpreadsRetries(t *testing.T) {
	b := backoff.Backoff{Initial: time.Second, Max: time.Second}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Delay(1)] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 delays took only %d distinct values; processes would retry in step", len(seen))
	}
}

func TestSleepStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if backoff.Sleep(ctx, time.Hour) {
		t.Error("Sleep on a cancelled context reported that it waited")
	}
	if !backoff.Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms did not report that it waited")
	}
}
