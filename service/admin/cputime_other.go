//go:build !unix

package admin

import "time"

// cpuTime is not measured here: without cgroups there is no quota to
// compare it with.
func cpuTime() time.Duration { return 0 }
