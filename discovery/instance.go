package discovery

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
)

// Instance is one running copy of a service: where to reach it and what it
// says about itself. Tags and Meta are matched by watch filters; Meta
// conventionally holds "version", "zone", "weight" and "canary".
//
// An Instance is a plain value, safe to copy and to read concurrently.
// Instances handed out by a [Watch] share
// their Tags and Meta with other watchers and must be treated as read-only;
// use [Instance.Clone] before changing one.
type Instance struct {
	// ID identifies the instance among all instances known to the
	// backend's agent. When registering, an empty ID defaults to
	// "<service>-<address>-<port>".
	ID string
	// Service is the name of the service the instance belongs to.
	Service string
	// Address is the host name or IP address the instance listens on.
	Address string
	// Port is the TCP port the instance listens on, 1 to 65535.
	Port int
	// Tags are free-form labels.
	Tags []string
	// Meta holds key/value metadata such as version, zone or weight.
	Meta map[string]string
}

// Well-known metadata keys.
const (
	MetaVersion = "version"
	MetaZone    = "zone"
	MetaWeight  = "weight"
	MetaCanary  = "canary"
)

// Endpoint returns the instance's address and port as "host:port", with
// IPv6 addresses in brackets, ready for net.Dial or a URL.
func (i Instance) Endpoint() string {
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

// HasTag reports whether the instance carries tag.
func (i Instance) HasTag(tag string) bool { return slices.Contains(i.Tags, tag) }

// Clone returns a deep copy of the instance.
func (i Instance) Clone() Instance {
	i.Tags = slices.Clone(i.Tags)
	i.Meta = maps.Clone(i.Meta)
	return i
}

// Equal reports whether two instances are the same in every field. A nil
// and an empty Tags (or Meta) are equal.
func (i Instance) Equal(o Instance) bool {
	return i.ID == o.ID && i.Service == o.Service && i.Address == o.Address &&
		i.Port == o.Port && slices.Equal(i.Tags, o.Tags) && maps.Equal(i.Meta, o.Meta)
}

// Registrar announces instances to a backend.
type Registrar interface {
	// Register validates r, announces the instance and keeps it announced
	// (renewing a TTL, registering again if the backend forgets it) until
	// the returned Registered is deregistered. Invalid input fails with an
	// error matching [ErrInvalidRegistration] that names the field; an ID
	// already used by an instance at another address fails with
	// [ErrDuplicateInstance].
	Register(ctx context.Context, r Registration) (Registered, error)
}

// Registered is an instance announced by a [Registrar].
type Registered interface {
	// Instance returns the instance as registered (with defaults filled in).
	Instance() Instance
	// Deregister stops keeping the instance announced, removes it from the
	// backend and waits until watchers can see that it is gone, or until
	// ctx or the registrar's bound ends. When it returns, the caller can
	// drain in-flight work and stop. Calling it again does nothing.
	Deregister(ctx context.Context) error
}

// Watcher follows the healthy instances of services.
type Watcher interface {
	// Watch starts following service. ctx bounds only the call; the watch
	// lives until its Close. Watches of the same service share one backend
	// query, whatever their options. An empty service name fails with a
	// [*FieldError] for "service", matching [ErrInvalidRegistration].
	Watch(ctx context.Context, service string, opts ...WatchOption) (Watch, error)
}

// Watch follows the set of healthy instances of one service.
//
// Implementations in this module are safe for concurrent use: Close may be
// called from any goroutine, also while Next blocks; concurrent calls of
// Next are served one after the other.
type Watch interface {
	// Next blocks until the watched set differs from the one it returned
	// last (the first call returns as soon as a first answer is known,
	// even a stale one), and returns the new snapshot. It returns ctx's
	// error when ctx ends first, and [ErrClosed] once the watch or its
	// watcher is closed.
	Next(ctx context.Context) (Snapshot, error)
	// Close stops the watch. It never fails in this module's
	// implementations; calling it again does nothing.
	Close() error
}
