package vitamintest_test

import (
	"os"
	"testing"

	"github.com/vitamin-go/vitamin/vitamintest"
)

type runner struct{ ran bool }

func (r *runner) Run() int { r.ran = true; return 0 }

func TestRunMain(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(tb testing.TB)
		wantCode int
		wantRan  bool
	}{
		{"setup passes", func(testing.TB) {}, 0, true},
		{"setup skips", func(tb testing.TB) { tb.Skipf("no consul") }, 0, false},
		{"setup fails", func(tb testing.TB) { tb.Fatalf("broken") }, 1, false},
		{"setup reports an error", func(tb testing.TB) { tb.Errorf("odd") }, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dir string
			cleaned := false
			r := &runner{}
			code := vitamintest.RunMain(r, func(tb testing.TB) {
				dir = tb.TempDir()
				tb.Cleanup(func() { cleaned = true })
				tt.setup(tb)
			})
			if code != tt.wantCode || r.ran != tt.wantRan {
				t.Errorf("code %d, tests ran %v; want %d, %v", code, r.ran, tt.wantCode, tt.wantRan)
			}
			if !cleaned {
				t.Error("cleanup did not run")
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("temporary directory %s left behind (%v)", dir, err)
			}
		})
	}
}
