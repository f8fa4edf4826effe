package admin

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultCgroupRoot is where the cgroup filesystem is mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// ErrNoLimits is returned by ReadLimits when the cgroup tree sets neither a
// CPU quota nor a memory limit (or there is no cgroup tree: not Linux, or
// not mounted).
var ErrNoLimits = errors.New("admin: no cgroup CPU quota or memory limit")

// Limits are the resource limits of the process's container, as its cgroup
// sets them. It is plain data.
type Limits struct {
	// Version is 2 or 1.
	Version int `json:"version"`
	// CPU is the CPU quota in CPUs (1.5: one and a half CPUs' time per
	// period); 0 when there is none.
	CPU float64 `json:"cpu"`
	// Memory is the memory limit in bytes; 0 when there is none.
	Memory int64 `json:"memory"`
}

// ReadLimits reads the CPU quota and memory limit of the process's cgroup
// in the tree mounted at root: cgroup v2's cpu.max and memory.max when
// root/cgroup.controllers exists, else cgroup v1's cpu/cpu.cfs_quota_us,
// cpu/cpu.cfs_period_us and memory/memory.limit_in_bytes. The process's
// cgroup is the path /proc/self/cgroup names under root when it exists
// there, else root itself (as in a container, whose own cgroup is the root
// of its namespace). It returns an error matching ErrNoLimits when none is
// set, and an error naming the file when one cannot be parsed.
func ReadLimits(root string) (Limits, error) {
	own := ownCgroups()
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return readV2(under(root, own[""]))
	}
	for _, c := range []string{"memory", "cpu"} {
		if _, err := os.Stat(filepath.Join(root, c)); err == nil {
			return readV1(under(filepath.Join(root, "cpu"), own["cpu"]), under(filepath.Join(root, "memory"), own["memory"]))
		}
	}
	return Limits{}, fmt.Errorf("%w: no cgroup tree at %s", ErrNoLimits, root)
}

// ownCgroups returns the process's cgroup path by v1 controller, and the
// v2 path under "".
func ownCgroups() map[string]string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3) // id:controllers:path
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// under returns dir/path when that directory exists, else dir.
func under(dir, path string) string {
	if path == "" || path == "/" {
		return dir
	}
	p := filepath.Join(dir, path)
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	return dir
}

func readV2(root string) (Limits, error) {
	l := Limits{Version: 2}
	if b, err := readFile(root, "cpu.max"); err == nil {
		f := strings.Fields(b)
		if len(f) != 2 {
			return l, fmt.Errorf("admin: %s: want \"<quota|max> <period>\", got %q", filepath.Join(root, "cpu.max"), b)
		}
		if f[0] != "max" {
			q, err1 := strconv.ParseFloat(f[0], 64)
			p, err2 := strconv.ParseFloat(f[1], 64)
			if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
				return l, fmt.Errorf("admin: %s: bad quota or period in %q", filepath.Join(root, "cpu.max"), b)
			}
			l.CPU = q / p
		}
	}
	if b, err := readFile(root, "memory.max"); err == nil && b != "max" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return l, fmt.Errorf("admin: %s: bad limit %q", filepath.Join(root, "memory.max"), b)
		}
		l.Memory = n
	}
	if l.CPU == 0 && l.Memory == 0 {
		return l, fmt.Errorf("%w (cgroup v2 at %s)", ErrNoLimits, root)
	}
	return l, nil
}

func readV1(cpu, mem string) (Limits, error) {
	l := Limits{Version: 1}
	q, qerr := readFile(cpu, "cpu.cfs_quota_us")
	p, perr := readFile(cpu, "cpu.cfs_period_us")
	if qerr == nil && perr == nil && q != "-1" {
		qv, err1 := strconv.ParseFloat(q, 64)
		pv, err2 := strconv.ParseFloat(p, 64)
		if err1 != nil || err2 != nil || qv <= 0 || pv <= 0 {
			return l, fmt.Errorf("admin: %s: bad quota %q or period %q", cpu, q, p)
		}
		l.CPU = qv / pv
	}
	if b, err := readFile(mem, "memory.limit_in_bytes"); err == nil {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return l, fmt.Errorf("admin: %s: bad limit %q", filepath.Join(mem, "memory.limit_in_bytes"), b)
		}
		// v1 writes a huge number (the page-rounded max int64) for "no limit".
		if n < math.MaxInt64/2 {
			l.Memory = n
		}
	}
	if l.CPU == 0 && l.Memory == 0 {
		return l, fmt.Errorf("%w (cgroup v1 at %s and %s)", ErrNoLimits, cpu, mem)
	}
	return l, nil
}

func readFile(root, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, name))
	return strings.TrimSpace(string(b)), err
}
