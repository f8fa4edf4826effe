package config_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

// watch runs cfg.Watch until the test ends.
func watch(t testing.TB, cfg *config.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cfg.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content the way editors do: to a temporary file in
// the same directory, then renamed over path.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// errs collects what the error handler receives.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) handle(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
}

func (e *errs) all() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.list...)
}

func equal[T comparable](p *config.Property[T], want T) func() error {
	return func() error {
		if got := p.Get(); got != want {
			return fmt.Errorf("%s = %v, want %v", p.Key(), got, want)
		}
		return nil
	}
}

type defaults struct {
	DB struct {
		Host string `yaml:"host"`
		Pool struct {
			Max int `yaml:"max"`
			Min int `yaml:"min"`
		} `yaml:"pool"`
	} `yaml:"db"`
	Name string `yaml:"name"`
}

func TestLayersOverrideInOrderAndDefaultsFillGaps(t *testing.T) {
	var d defaults
	d.DB.Host, d.DB.Pool.Max, d.DB.Pool.Min, d.Name = "default-host", 1, 1, "default-name"

	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	writeFile(t, file, "db:\n  host: file-host\n  pool:\n    max: 2\n    min: 2\n")
	mem := config.NewMemorySource(map[string]any{"db.pool.max": "3", "db.pool.min": 3})
	env := func() []string {
		return []string{"APP_DB_POOL_MAX=4", "OTHER_DB_POOL_MIN=99", "APP_LOG__LEVEL=debug"}
	}

	cfg, err := config.Load(context.Background(), config.Layers{
		Defaults:  d,
		File:      file,
		Sources:   []config.Source{mem},
		EnvPrefix: "APP_",
	}, config.WithEnviron(env))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, k := range cfg.Snapshot().Keys() {
		v, _ := cfg.Snapshot().Get(k)
		got[k] = fmt.Sprint(v)
	}
	want := map[string]any{
		"name":        "default-name", // only in defaults
		"db.host":     "file-host",    // file over defaults
		"db.pool.min": "3",            // source over file
		"db.pool.max": "4",            // env over all
		"log_level":   "debug",        // "__" is a literal "_"
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged configuration (-want +got):\n%s", diff)
	}

	// Each layer still overrides the ones below it when it changes.
	watch(t, cfg)
	max := config.Int(cfg, "db.pool.max", 0)
	min := config.Int(cfg, "db.pool.min", 0)
	mem.Delete("db.pool.min")
	vitamintest.Eventually(t, wait, equal(min, 2)) // falls through to the file
	replaceFile(t, file, "db:\n  pool:\n    max: 20\n")
	vitamintest.Eventually(t, wait, equal(min, 1)) // falls through to the defaults
	mem.Set("db.pool.max", 30)
	if got := max.Get(); got != 4 {
		t.Errorf("db.pool.max = %d, want 4 from the environment", got)
	}
}

func TestLoadRejectsInvalidSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		layers config.Layers
		want   error
		field  string
	}{
		{"unknown format", config.Layers{File: filepath.Join(dir, "app.ini")}, config.ErrInvalidConfig, "Layers.File"},
		{"bad format", config.Layers{File: "x", FileFormat: "xml"}, config.ErrInvalidConfig, "Layers.FileFormat"},
		{"bad defaults", config.Layers{Defaults: 3}, config.ErrInvalidConfig, "Layers.Defaults"},
		{"nil source", config.Layers{Sources: []config.Source{nil}}, config.ErrInvalidConfig, "Layers.Sources[0]"},
		{"missing file", config.Layers{File: filepath.Join(dir, "nope.yaml")}, config.ErrSource, "nope.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(context.Background(), tc.layers)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			var fe *config.FieldError
			if tc.want == config.ErrInvalidConfig && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Errorf("error %q is not a FieldError for %s", err, tc.field)
			}
		})
	}
	// An optional file may be missing, and is picked up once written.
	file := filepath.Join(dir, "later.json")
	cfg, err := config.Load(context.Background(), config.Layers{File: file, FileOptional: true})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	s := config.String(cfg, "mode", "none")
	replaceFile(t, file, `{"mode": "fast"}`)
	vitamintest.Eventually(t, wait, equal(s, "fast"))
}

func TestFileReplacedByRenameIsReloadedAndMalformedFileRejected(t *testing.T) {
	for _, format := range []struct{ ext, v1, v2, bad, noName string }{
		{"yaml", "pool: 5\nname: a\n", "pool: 7\nname: b\n", "pool: [\n", "pool: 5\n"},
		{"json", `{"pool": 5, "name": "a"}`, `{"pool": 7, "name": "b"}`, `{"pool": `, `{"pool": 5}`},
		{"toml", "pool = 5\nname = \"a\"\n", "pool = 7\nname = \"b\"\n", "pool = = 1\n", "pool = 5\n"},
	} {
		t.Run(format.ext, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "app."+format.ext)
			writeFile(t, file, format.v1)
			var rejected errs
			cfg, err := config.Load(context.Background(), config.Layers{File: file}, config.WithErrorHandler(rejected.handle))
			if err != nil {
				t.Fatal(err)
			}
			watch(t, cfg)
			pool := config.Int(cfg, "pool", 1)
			name := config.String(cfg, "name", "")
			if pool.Get() != 5 || name.Get() != "a" {
				t.Fatalf("pool, name = %d, %q; want 5, a", pool.Get(), name.Get())
			}

			replaceFile(t, file, format.v2)
			vitamintest.Eventually(t, wait, equal(pool, 7))

			replaceFile(t, file, format.bad)
			vitamintest.Eventually(t, wait, func() error {
				for _, err := range rejected.all() {
					var re *config.RejectedError
					if errors.As(err, &re) && re.Layer == "file:app."+format.ext {
						return nil
					}
				}
				return fmt.Errorf("no rejection reported; got %v", rejected.all())
			})
			if pool.Get() != 7 || name.Get() != "b" {
				t.Errorf("after a malformed file: pool, name = %d, %q; want the last good 7, b", pool.Get(), name.Get())
			}

			// Written in place, and a key deleted: it really disappears.
			writeFile(t, file, format.noName)
			vitamintest.Eventually(t, wait, equal(name, ""))
			if pool.Get() != 5 {
				t.Errorf("pool = %d, want 5", pool.Get())
			}
		})
	}
}

func TestOnChangeFiresOncePerRealChangeAndDeleteRestoresDefault(t *testing.T) {
	mem := config.NewMemorySource(nil)
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{mem}})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	pool := config.Int(cfg, "db.pool.max", 10)
	type change struct{ Old, New int }
	changes := make(chan change, 10)
	pool.OnChange(func(old, new int) { changes <- change{old, new} })

	next := func() change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(wait):
			t.Fatal("no OnChange call")
			return change{}
		}
	}
	mem.Set("db.pool.max", "25")
	if got := next(); got != (change{10, 25}) {
		t.Errorf("OnChange(%v), want 10 → 25", got)
	}
	mem.Set("db.pool.max", 25)    // same value, another type
	mem.Set("other", "x")         // another key
	mem.Set("db.pool.max", " 25") // same value once parsed
	mem.Delete("db.pool.max")
	if got := next(); got != (change{25, 10}) {
		t.Errorf("OnChange(%v), want 25 → 10 (the default)", got)
	}
	if got := pool.Get(); got != 10 {
		t.Errorf("Get = %d after delete, want the default 10", got)
	}
	select {
	case c := <-changes:
		t.Errorf("unexpected OnChange(%v)", c)
	default:
	}
}

func TestInvalidValueIsRejectedReportedAndCounted(t *testing.T) {
	metrics := vitamintest.NewMetrics(t)
	mem := config.NewMemorySource(map[string]any{"db.pool.max": 5, "timeout": "1s"})
	reported := make(chan error, 10)
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{mem}},
		config.WithMeterProvider(metrics.Provider), config.WithErrorHandler(func(err error) { reported <- err }))
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	pool := config.Int(cfg, "db.pool.max", 10, config.Between(1, 100))
	timeout := config.Duration(cfg, "timeout", time.Second)
	var calls atomic.Int32
	pool.OnChange(func(int, int) { calls.Add(1) })

	for _, bad := range []any{"lots", 1000} {
		mem.Set("db.pool.max", bad)
		select {
		case err := <-reported:
			var re *config.RejectedError
			if !errors.As(err, &re) || !errors.Is(err, config.ErrRejected) || !errors.Is(err, config.ErrInvalidValue) {
				t.Fatalf("reported %v, want a *RejectedError wrapping ErrInvalidValue", err)
			}
			if re.Key != "db.pool.max" || re.Value != bad {
				t.Errorf("rejected key %q value %v, want db.pool.max %v", re.Key, re.Value, bad)
			}
		case <-time.After(wait):
			t.Fatalf("rejection of %v not reported", bad)
		}
		if got := pool.Get(); got != 5 {
			t.Errorf("after %v: Get = %d, want the last good 5", bad, got)
		}
	}
	mem.Set("timeout", "soon")
	<-reported
	mem.Set("db.pool.max", 50)
	vitamintest.Eventually(t, wait, equal(pool, 50))
	if calls.Load() != 1 || timeout.Get() != time.Second {
		t.Errorf("OnChange calls = %d, timeout = %v; want 1 and 1s", calls.Load(), timeout.Get())
	}

	got := map[string]int64{}
	for _, key := range []string{"db.pool.max", "timeout"} {
		got[key] = metrics.Sum(t, "vitamin.config.rejections", attribute.String("key", key))
	}
	if diff := cmp.Diff(map[string]int64{"db.pool.max": 2, "timeout": 1}, got); diff != "" {
		t.Errorf("vitamin.config.rejections (-want +got):\n%s", diff)
	}
}

type pool struct {
	Min  int           `yaml:"min"`
	Max  int           `yaml:"max"`
	Idle time.Duration `yaml:"idle"`
}

func TestConcurrentReadersSeeOnlyWholeSnapshots(t *testing.T) {
	mem := config.NewMemorySource(map[string]any{"pool.min": 0, "pool.max": 0, "pool.idle": "0s"})
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{mem}})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	bound := config.Bind[pool](cfg, "pool", config.Validate(func(p *pool) error {
		if p.Min != p.Max {
			return fmt.Errorf("min %d != max %d", p.Min, p.Max)
		}
		return nil
	}))

	const changes = 300
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var torn atomic.Int64
	stopReaders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopReaders()
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := cfg.Snapshot()
				a, _ := s.Get("pool.min")
				b, _ := s.Get("pool.max")
				c, _ := s.Get("pool.idle")
				if fmt.Sprint(a) != fmt.Sprint(b) || fmt.Sprint(a)+"ms" != fmt.Sprint(c) && fmt.Sprint(c) != "0s" {
					torn.Add(1)
				}
				p := bound.Get()
				if p.Min != p.Max || p.Idle != time.Duration(p.Min)*time.Millisecond {
					torn.Add(1)
				}
			}
		})
	}
	applied := make(chan int, 1)
	bound.OnChange(func(_, p *pool) { applied <- p.Max })
	first := cfg.Snapshot().Version()
	for i := 1; i <= changes; i++ {
		mem.Replace(map[string]any{"pool": map[string]any{"min": i, "max": i, "idle": fmt.Sprintf("%dms", i)}})
		// Each change is applied before the next, so that readers race
		// with hundreds of swaps.
		select {
		case got := <-applied:
			if got != i {
				t.Fatalf("pool.max changed to %d, want %d", got, i)
			}
		case <-time.After(wait):
			t.Fatalf("change %d not applied", i)
		}
	}
	if n := cfg.Snapshot().Version() - first; n < changes {
		t.Errorf("%d snapshots applied, want %d", n, changes)
	}
	stopReaders()
	if n := torn.Load(); n > 0 {
		t.Errorf("readers saw %d half-applied changes", n)
	}
}

func TestWatchTwiceFails(t *testing.T) {
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{config.NewMemorySource(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- cfg.Watch(ctx) }()
	}
	if err := <-done; !errors.Is(err, config.ErrWatching) {
		t.Errorf("one of two Watch calls returned %v, want ErrWatching", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
}
