package consul

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoLeader is matched (with errors.Is) by the Err of a watch snapshot
// served from a Consul server that knows no leader: the cluster is
// electing one. The concrete error is a *NoLeaderError.
var ErrNoLeader = errors.New("consul: no cluster leader")

// NoLeaderError is the Err of a snapshot that a server answered without
// knowing a leader (a stale read during an election). The snapshot is
// marked Stale; its instances are that server's answer. It matches
// ErrNoLeader. It is not modified after it is made, so it is safe for
// concurrent use.
type NoLeaderError struct {
	// LastContact is how long before the answer the server last heard
	// from a leader.
	LastContact time.Duration
}

// Error says that the answering server knew no leader, and since when.
func (e *NoLeaderError) Error() string {
	return fmt.Sprintf("consul: no cluster leader (the answering server last heard from one %v ago)", e.LastContact.Round(time.Millisecond))
}

// Is reports whether target is ErrNoLeader.
func (e *NoLeaderError) Is(target error) bool { return target == ErrNoLeader }
