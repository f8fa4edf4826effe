package client

import (
	"sync"
	"sync/atomic"
)

// Routing is a Balancing that can change while the clients that follow it
// run: hand it to clients with WithRouting, and make it follow a prefix of
// the configuration with its Update method, for example
//
//	config.Follow(cfg, "clients.inventory.balancing", routing.Update)
//
// An update reaches the next attempt of every call, those in flight
// included, without rebuilding the connection: instances keep their
// latency estimates, load and ejection state, and ejected instances stay
// out until their ejection ends (unless the update switches outlier
// ejection off, which returns them at once).
//
// Routing is safe for concurrent use; one Routing may serve several
// clients of the same service (its gRPC and HTTP clients, say).
type Routing struct {
	cur atomic.Pointer[Balancing] // with its defaults

	mu    sync.Mutex // serialises Update and guards cores
	cores map[*core]struct{}
}

// NewRouting validates b and returns a Routing that starts with it.
func NewRouting(b Balancing) (*Routing, error) {
	bd, err := b.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Routing{cores: map[*core]struct{}{}}
	r.cur.Store(&bd)
	return r, nil
}

// Update validates b and, if it is valid, makes it the balancing of every
// client that follows r, atomically for each; an invalid b is rejected
// with a *FieldError naming the field, and the current balancing stays.
func (r *Routing) Update(b Balancing) error {
	bd, err := b.withDefaults()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.cores {
		c.setBalancing(bd)
	}
	r.cur.Store(&bd) // once it is in effect
	return nil
}

// Balancing returns the current balancing, with its defaults filled in.
func (r *Routing) Balancing() Balancing { return *r.cur.Load() }

// follow makes c follow r until the returned function is called.
func (r *Routing) follow(c *core) (stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.setBalancing(*r.cur.Load())
	r.cores[c] = struct{}{}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.cores, c)
	}
}
