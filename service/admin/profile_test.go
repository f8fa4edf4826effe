package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vitamin-go/vitamin/service/admin"
)

// fakeCgroup writes a cgroup tree into a temp dir: files maps a path
// under the root to its content.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  admin.Limits
		err   error
	}{
		{"v2 quota and limit", map[string]string{"cgroup.controllers": "cpu memory", "cpu.max": "150000 100000", "memory.max": "536870912"},
			admin.Limits{Version: 2, CPU: 1.5, Memory: 512 << 20}, nil},
		{"v2 memory only", map[string]string{"cgroup.controllers": "memory", "cpu.max": "max 100000", "memory.max": "1048576"},
			admin.Limits{Version: 2, Memory: 1 << 20}, nil},
		{"v2 none", map[string]string{"cgroup.controllers": "", "cpu.max": "max 100000", "memory.max": "max"}, admin.Limits{}, admin.ErrNoLimits},
		{"v1 quota and limit", map[string]string{"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "memory/memory.limit_in_bytes": "268435456"},
			admin.Limits{Version: 1, CPU: 0.5, Memory: 256 << 20}, nil},
		{"v1 none", map[string]string{"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000", "memory/memory.limit_in_bytes": "9223372036854771712"},
			admin.Limits{}, admin.ErrNoLimits},
		{"no tree", map[string]string{}, admin.Limits{}, admin.ErrNoLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := admin.ReadLimits(fakeCgroup(t, tc.files))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if tc.err == nil {
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("limits (-want +got):\n%s", diff)
				}
			}
		})
	}
	_, err := admin.ReadLimits(fakeCgroup(t, map[string]string{"cgroup.controllers": "", "cpu.max": "lots 100000"}))
	if err == nil || errors.Is(err, admin.ErrNoLimits) {
		t.Errorf("bad cpu.max: %v, want an error naming the file", err)
	}
}

// burn keeps one goroutine busy until stop is called.
func burn() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		x := 0
		for ctx.Err() == nil {
			for i := range 100000 {
				x += i * i
			}
			runtime.Gosched()
		}
		_ = x
	})
	return func() { cancel(); wg.Wait() }
}

func runProfiler(t *testing.T, cfg admin.Profiling) *admin.Profiler {
	t.Helper()
	p, err := admin.NewProfiler(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

// A real CPU burner against a fake quota of 0.05 CPU: a capture appears,
// with its three profiles, and the cool-down holds further ones back.
func TestProfilerCapturesThenCoolsDown(t *testing.T) {
	root := fakeCgroup(t, map[string]string{"cgroup.controllers": "cpu memory", "cpu.max": "5000 100000"})
	dir := filepath.Join(t.TempDir(), "profiles")
	stop := burn()
	defer stop()
	p := runProfiler(t, admin.Profiling{CgroupRoot: root, Dir: dir, Window: 50 * time.Millisecond,
		CPUProfile: 100 * time.Millisecond, Cooldown: time.Hour, CPUShare: 0.5})

	eventually(t, 20*time.Second, "a capture", func() bool { return p.State().Captures == 1 })
	st := p.State()
	if len(st.Files) != 1 || len(st.Files[0].Files) != 3 || st.Files[0].Reason != "cpu" {
		t.Fatalf("captures %+v: want one CPU capture of three profiles", st.Files)
	}
	for _, f := range st.Files[0].Files {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v, want a non-empty file", f, err)
		}
	}
	// The burner keeps the share above the threshold: checks go on, and
	// each crossing is held back.
	checks := st.Checks
	eventually(t, 20*time.Second, "ten more checks held back by the cool-down", func() bool {
		s := p.State()
		return s.Checks >= checks+10 && s.CooledDown >= 10
	})
	if st := p.State(); st.Captures != 1 || countFiles(t, dir) != 3 {
		t.Fatalf("%d captures, %d files after the cool-down held: want 1 and 3", st.Captures, countFiles(t, dir))
	}
}

// Without a cool-down, captures follow one another: the directory never
// holds more than MaxCaptures of them.
func TestProfilerDirectoryStaysBounded(t *testing.T) {
	root := fakeCgroup(t, map[string]string{"cpu/cpu.cfs_quota_us": "5000", "cpu/cpu.cfs_period_us": "100000"})
	dir := filepath.Join(t.TempDir(), "profiles")
	stop := burn()
	defer stop()
	p := runProfiler(t, admin.Profiling{CgroupRoot: root, Dir: dir, Window: 20 * time.Millisecond,
		CPUProfile: 20 * time.Millisecond, Cooldown: time.Nanosecond, MaxCaptures: 2, CPUShare: 0.5})
	most := 0
	eventually(t, 30*time.Second, "six captures", func() bool {
		most = max(most, countFiles(t, dir))
		return p.State().Captures >= 6
	})
	if most > 2*3 {
		t.Fatalf("the directory held %d files, want at most 6 (2 captures)", most)
	}
	// While a capture is written, the oldest one is already gone.
	if st := p.State(); len(st.Files) < 1 || len(st.Files) > 2 {
		t.Fatalf("%d captures listed, want the last 2 (or 1 while the next is written)", len(st.Files))
	}
}

// Without limits the profiler says so and does nothing.
func TestProfilerWithoutLimits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "profiles")
	p, err := admin.NewProfiler(admin.Profiling{CgroupRoot: t.TempDir(), Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Run(context.Background()) // returns at once
	st := p.State()
	if st.Active || st.Status == "" {
		t.Errorf("state %+v: want inactive, saying why", st)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the profiler made its directory without limits: %v", err)
	}
}

// Through the Server: GOMEMLIMIT follows the container's memory limit,
// and the page lists the captures for download.
func TestServerMemoryLimitAndCaptureDownload(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set in the environment: the memory limit is left alone")
	}
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	root := fakeCgroup(t, map[string]string{"cgroup.controllers": "cpu memory", "cpu.max": "5000 100000", "memory.max": "4294967296"})
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", MemoryLimit: admin.MemoryLimit{Share: 0.5},
		Profiling: admin.Profiling{CgroupRoot: root, Dir: t.TempDir(), Window: 50 * time.Millisecond,
			CPUProfile: 50 * time.Millisecond, Cooldown: time.Hour, CPUShare: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	stop := burn()
	defer stop()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	if got := debug.SetMemoryLimit(-1); got != 2<<30 {
		t.Errorf("GOMEMLIMIT %d, want half the container's 4 GiB", got)
	}
	eventually(t, 20*time.Second, "a capture", func() bool { return srv.Profiler().State().Captures == 1 })
	file := srv.Profiler().State().Files[0].Files[0]
	page := get(t, "http://"+srv.Addr()+"/")
	if !strings.Contains(page, `href="/api/v1/profiles/`+file+`"`) {
		t.Errorf("the page does not link %s", file)
	}
	if body := get(t, "http://"+srv.Addr()+"/api/v1/profiles/"+file); len(body) == 0 {
		t.Errorf("download of %s is empty", file)
	}
	if resp, err := http.Get("http://" + srv.Addr() + "/api/v1/profiles/..%2fetc%2fpasswd"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("a path outside the captures: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
