package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

// Defaults of Profiling and MemoryLimit.
const (
	DefaultMaxCaptures = 10
	DefaultCPUShare    = 0.8
	DefaultMemoryShare = 0.8
	DefaultWindow      = 10 * time.Second
	DefaultCPUProfile  = 5 * time.Second
	DefaultCooldown    = 10 * time.Minute
	DefaultMemoryLimit = 0.9
)

// Profiling configures the automatic profiles: every Window the profiler
// compares the CPU time the process used over the window with the
// container's CPU quota, and the memory the Go runtime holds with the
// container's memory limit; when one crosses its share, it captures a CPU
// profile (CPUProfile long), a heap profile and a goroutine profile into
// Dir, unless a capture happened less than Cooldown ago. Without a quota
// or a limit (or off Linux) it says so on the page and does nothing.
type Profiling struct {
	// Disabled turns the automatic profiles off; pprof stays served.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// CgroupRoot is where the cgroup tree is read. Default
	// "/sys/fs/cgroup".
	CgroupRoot string `yaml:"cgroup_root" json:"cgroup_root"`
	// Dir holds the captures. Default "<temp dir>/vitamin-profiles"; give
	// each process its own when several share a host.
	Dir string `yaml:"dir" json:"dir"`
	// MaxCaptures bounds Dir: the oldest capture is removed before a new
	// one is written. Default 10 (three files each).
	MaxCaptures int `yaml:"max_captures" json:"max_captures"`
	// CPUShare is the share of the CPU quota, used over Window, that
	// triggers a capture. Default 0.8.
	CPUShare float64 `yaml:"cpu_share" json:"cpu_share"`
	// MemoryShare is the share of the memory limit that triggers a
	// capture. Default 0.8.
	MemoryShare float64 `yaml:"memory_share" json:"memory_share"`
	// Window is how often use is measured, and the window CPU use is
	// averaged over. Default 10s.
	Window time.Duration `yaml:"window" json:"window"`
	// CPUProfile is how long the CPU profile of a capture runs. Default 5s.
	CPUProfile time.Duration `yaml:"cpu_profile" json:"cpu_profile"`
	// Cooldown is the least time between two captures. Default 10m.
	Cooldown time.Duration `yaml:"cooldown" json:"cooldown"`
}

func (p Profiling) withDefaults() (Profiling, error) {
	def(&p.CgroupRoot, DefaultCgroupRoot)
	def(&p.Dir, filepath.Join(os.TempDir(), "vitamin-profiles"))
	switch {
	case p.MaxCaptures < 0:
		return p, invalid("Admin.Profiling.MaxCaptures", p.MaxCaptures, "must not be negative")
	case p.MaxCaptures == 0:
		p.MaxCaptures = DefaultMaxCaptures
	}
	for _, f := range []struct {
		name string
		v    *float64
		d    float64
	}{{"Admin.Profiling.CPUShare", &p.CPUShare, DefaultCPUShare}, {"Admin.Profiling.MemoryShare", &p.MemoryShare, DefaultMemoryShare}} {
		if *f.v < 0 || *f.v > 1 {
			return p, invalid(f.name, *f.v, "must be between 0 and 1")
		}
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		d    time.Duration
	}{{"Admin.Profiling.Window", &p.Window, DefaultWindow}, {"Admin.Profiling.CPUProfile", &p.CPUProfile, DefaultCPUProfile}} {
		if *f.v < 0 {
			return p, invalid(f.name, *f.v, "must not be negative")
		}
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	switch {
	case p.Cooldown < 0:
		return p, invalid("Admin.Profiling.Cooldown", p.Cooldown, "must not be negative")
	case p.Cooldown == 0:
		p.Cooldown = DefaultCooldown
	}
	return p, nil
}

// MemoryLimit sets the Go runtime's soft memory limit (GOMEMLIMIT) to a
// share of the container's memory limit when Start runs, so that the
// garbage collector works harder before the kernel kills the process.
// It does nothing when GOMEMLIMIT is set in the environment or there is
// no memory limit.
type MemoryLimit struct {
	// Disabled leaves the runtime's memory limit alone.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// Share of the container's limit. Default 0.9.
	Share float64 `yaml:"share" json:"share"`
}

func (m MemoryLimit) withDefaults() (MemoryLimit, error) {
	if m.Share < 0 || m.Share > 1 {
		return m, invalid("Admin.MemoryLimit.Share", m.Share, "must be between 0 and 1")
	}
	if m.Share == 0 {
		m.Share = DefaultMemoryLimit
	}
	return m, nil
}

func def(s *string, d string) {
	if *s == "" {
		*s = d
	}
}

// applyMemoryLimit sets GOMEMLIMIT from the cgroup's memory limit, and
// returns the limit set (0: none).
func applyMemoryLimit(m MemoryLimit, root string, log *slog.Logger) int64 {
	if m.Disabled {
		return 0
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("admin: GOMEMLIMIT is set in the environment; memory limit left alone", "GOMEMLIMIT", v)
		return 0
	}
	l, err := ReadLimits(root)
	if err != nil || l.Memory == 0 {
		log.Info("admin: no container memory limit; GOMEMLIMIT not set", "cgroup_root", root, "err", err)
		return 0
	}
	limit := int64(m.Share * float64(l.Memory))
	debug.SetMemoryLimit(limit)
	log.Info("admin: GOMEMLIMIT set from the container's memory limit", "limit", limit, "container_limit", l.Memory, "share", m.Share)
	return limit
}

// Capture is one automatic capture: three profiles taken together.
type Capture struct {
	// ID names the capture; its files are ID + "-cpu.pprof",
	// "-heap.pprof" and "-goroutine.pprof" in Profiling.Dir, served on
	// /api/v1/profiles/{file}.
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Files  []string  `json:"files"`
}

// ProfilingState is what the profiler did and sees.
type ProfilingState struct {
	// Active is set while the profiler watches; Status says what it does
	// or why it does nothing ("no cgroup CPU quota or memory limit").
	Active bool   `json:"active"`
	Status string `json:"status"`
	Limits Limits `json:"limits"`
	// CPUShare and MemoryShare are the last measured shares of the quota
	// and limit.
	CPUShare    float64 `json:"cpu_share"`
	MemoryShare float64 `json:"memory_share"`
	// Checks counts measurements; Captures counts captures taken;
	// CooledDown counts crossings ignored because of the cool-down.
	Checks     uint64 `json:"checks"`
	Captures   uint64 `json:"captures"`
	CooledDown uint64 `json:"cooled_down"`
	// MemoryLimit is the GOMEMLIMIT in effect (math.MaxInt64: none).
	MemoryLimit int64 `json:"memory_limit"`
	// Files are the captures in Dir, newest first.
	Files []Capture `json:"files"`
}

// Profiler captures profiles when the process nears its container's
// limits (see Profiling). Server.Start runs it. It is safe for concurrent
// use.
type Profiler struct {
	cfg  Profiling
	log  *slog.Logger
	inst instruments

	mu    sync.Mutex
	st    ProfilingState
	last  time.Time
	files []Capture
}

func newProfiler(cfg Profiling, log *slog.Logger, inst instruments) *Profiler {
	status := "not started"
	if cfg.Disabled {
		status = "disabled (Admin.Profiling.Disabled)"
	}
	return &Profiler{cfg: cfg, log: log, inst: inst, st: ProfilingState{Status: status}}
}

// NewProfiler returns a Profiler for cfg (its defaults filled in), for use
// without a Server. An invalid field fails with a *FieldError.
func NewProfiler(cfg Profiling, logger *slog.Logger) (*Profiler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return newProfiler(cfg, logger, newInstruments(noop.NewMeterProvider())), nil
}

// State returns what the profiler did and sees.
func (p *Profiler) State() ProfilingState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Files = append([]Capture{}, p.files...)
	slices.Reverse(st.Files)
	st.MemoryLimit = debug.SetMemoryLimit(-1)
	return st
}

func (p *Profiler) set(f func(*ProfilingState)) {
	p.mu.Lock()
	f(&p.st)
	p.mu.Unlock()
}

// Run watches the process's use of its limits until ctx ends. Without
// limits, or when disabled, it records why and returns at once.
func (p *Profiler) Run(ctx context.Context) {
	if p.cfg.Disabled {
		return
	}
	l, err := ReadLimits(p.cfg.CgroupRoot)
	if err != nil {
		p.set(func(s *ProfilingState) { s.Status = "off: " + err.Error() })
		p.log.Info("admin: automatic profiling off", "err", err)
		return
	}
	if err := os.MkdirAll(p.cfg.Dir, 0o755); err != nil {
		p.set(func(s *ProfilingState) { s.Status = "off: " + err.Error() })
		p.log.Warn("admin: automatic profiling off: cannot make its directory", "dir", p.cfg.Dir, "err", err)
		return
	}
	p.mu.Lock()
	p.files = p.scan()
	p.st.Active, p.st.Limits = true, l
	p.st.Status = fmt.Sprintf("watching: capture at %.0f%% of the CPU quota or %.0f%% of the memory limit, at most every %v",
		p.cfg.CPUShare*100, p.cfg.MemoryShare*100, p.cfg.Cooldown)
	p.mu.Unlock()
	p.log.Info("admin: automatic profiling on", "cpu_quota", l.CPU, "memory_limit", l.Memory, "dir", p.cfg.Dir)

	prevCPU, prevAt := cpuTime(), time.Now()
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	for backoff.Sleep(ctx, p.cfg.Window) {
		now, cpu := time.Now(), cpuTime()
		var cpuShare, memShare float64
		if l.CPU > 0 {
			cpuShare = (cpu - prevCPU).Seconds() / now.Sub(prevAt).Seconds() / l.CPU
		}
		prevCPU, prevAt = cpu, now
		if l.Memory > 0 {
			metrics.Read(sample)
			held := sample[0].Value.Uint64() - sample[1].Value.Uint64()
			memShare = float64(held) / float64(l.Memory)
		}
		reason := ""
		switch {
		case l.CPU > 0 && cpuShare >= p.cfg.CPUShare:
			reason = "cpu"
		case l.Memory > 0 && memShare >= p.cfg.MemoryShare:
			reason = "memory"
		}
		p.mu.Lock()
		p.st.Checks++
		p.st.CPUShare, p.st.MemoryShare = cpuShare, memShare
		cooling := reason != "" && !p.last.IsZero() && now.Sub(p.last) < p.cfg.Cooldown
		if cooling {
			p.st.CooledDown++
		}
		p.mu.Unlock()
		if reason == "" || cooling {
			continue
		}
		p.capture(ctx, reason, cpuShare, memShare)
		// The capture's own CPU profile is not the process's load.
		prevCPU, prevAt = cpuTime(), time.Now()
	}
}

// idTime is the time format of capture IDs.
const idTime = "20060102T150405.000000Z"

// captureFile matches the captures' file names: the ID, then the profile.
var captureFile = regexp.MustCompile(`^(\d{8}T\d{6}\.\d{6}Z-(cpu|memory))-(cpu|heap|goroutine)\.pprof$`)

// scan lists the captures already in Dir, oldest first.
func (p *Profiler) scan() []Capture {
	entries, _ := os.ReadDir(p.cfg.Dir)
	byID := map[string]*Capture{}
	var ids []string
	for _, e := range entries {
		m := captureFile.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		c := byID[m[1]]
		if c == nil {
			t, _ := time.Parse(idTime, m[1][:len(idTime)])
			c = &Capture{ID: m[1], Time: t, Reason: m[2]}
			byID[m[1]] = c
			ids = append(ids, m[1])
		}
		c.Files = append(c.Files, e.Name())
	}
	slices.Sort(ids)
	out := make([]Capture, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	return out
}

func (p *Profiler) capture(ctx context.Context, reason string, cpuShare, memShare float64) {
	now := time.Now().UTC()
	id := now.Format(idTime) + "-" + reason
	// Make room first, so that Dir never holds more than MaxCaptures.
	p.mu.Lock()
	p.last = now
	for len(p.files) >= p.cfg.MaxCaptures {
		for _, f := range p.files[0].Files {
			_ = os.Remove(filepath.Join(p.cfg.Dir, f))
		}
		p.files = p.files[1:]
	}
	p.mu.Unlock()

	c := Capture{ID: id, Time: now, Reason: reason}
	var errs []error
	write := func(kind string, f func(*os.File) error) {
		name := id + "-" + kind + ".pprof"
		path := filepath.Join(p.cfg.Dir, name)
		out, err := os.Create(path)
		if err == nil {
			err = f(out)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			_ = os.Remove(path)
			errs = append(errs, fmt.Errorf("%s profile: %w", kind, err))
			return
		}
		c.Files = append(c.Files, name)
	}
	write("heap", func(f *os.File) error { return pprof.Lookup("heap").WriteTo(f, 0) })
	write("goroutine", func(f *os.File) error { return pprof.Lookup("goroutine").WriteTo(f, 0) })
	write("cpu", func(f *os.File) error {
		if err := pprof.StartCPUProfile(f); err != nil {
			return err // a CPU profile already runs (/debug/pprof/profile)
		}
		backoff.Sleep(ctx, p.cfg.CPUProfile)
		pprof.StopCPUProfile()
		return nil
	})
	p.mu.Lock()
	p.files = append(p.files, c)
	p.st.Captures++
	p.mu.Unlock()
	p.inst.profiles.Add(context.Background(), 1, metric.WithAttributes(attrReason.String(reason)))
	p.log.Warn("admin: profiles captured", "reason", reason, "cpu_share", cpuShare, "memory_share", memShare,
		"dir", p.cfg.Dir, "files", strings.Join(c.Files, ","), "err", errors.Join(errs...))
}

func (s *Server) serveProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !captureFile.MatchString(name) {
		text(w, http.StatusNotFound, "admin: no such profile")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeFile(w, r, filepath.Join(s.cfg.Profiling.Dir, name))
}
