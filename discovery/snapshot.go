package discovery

import (
	"cmp"
	"slices"
	"time"
)

// Snapshot is what a [Watch] knows about a service at one moment. It is a
// value, safe to read from several goroutines; its Instances slice is
// shared with other watchers and must not be modified.
type Snapshot struct {
	// Service is the watched service.
	Service string
	// Instances are the healthy instances that pass the watch's filters,
	// sorted by ID. While Stale or Preserved is set, they are the last good
	// set, not the backend's latest answer.
	Instances []Instance
	// Stale is set while the backend cannot be reached — Instances is
	// then the last set confirmed by the backend, at LastConfirmed — or
	// answers without being able to vouch for its answer (a Consul server
	// during a leader election): Instances is then that answer.
	Stale bool
	// Preserved is set while self-preservation holds on to the last good
	// set because the backend answered with an empty set, or one that
	// dropped more than the configured share, that is not yet confirmed —
	// or, during a restart grace (SelfPreservation.RestartGrace), with a
	// set that lacks instances the backend may have forgotten. Instances
	// then also holds the instances the answer added.
	Preserved bool
	// LastConfirmed is when the backend last answered. It is zero if it
	// never did.
	LastConfirmed time.Time
	// Err is the last error from the backend while Stale; nil otherwise.
	Err error
}

// differs reports whether a watcher that saw a should be woken for b.
// LastConfirmed alone moving forward does not wake anyone.
func (a Snapshot) differs(b Snapshot) bool {
	if a.Stale != b.Stale || a.Preserved != b.Preserved || (a.Err == nil) != (b.Err == nil) {
		return true
	}
	return !slices.EqualFunc(a.Instances, b.Instances, Instance.Equal)
}

// SortInstances sorts instances by ID (then by endpoint), the order in
// which snapshots list them.
func SortInstances(in []Instance) {
	slices.SortFunc(in, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
}

// WatchOption narrows or configures a watch. Options are applied once,
// when the watch is created.
type WatchOption func(*watchOptions)

type watchOptions struct {
	tags    []string
	meta    map[string]string
	filters []func(Instance) bool
}

// WithTags keeps only instances that carry every one of tags.
func WithTags(tags ...string) WatchOption {
	return func(o *watchOptions) { o.tags = append(o.tags, tags...) }
}

// WithMeta keeps only instances whose metadata has key set to value.
// Several WithMeta options must all match.
func WithMeta(key, value string) WatchOption {
	return func(o *watchOptions) {
		if o.meta == nil {
			o.meta = map[string]string{}
		}
		o.meta[key] = value
	}
}

// WithFilter keeps only instances for which keep returns true. keep is
// called from the goroutine that calls Next and must not modify the
// instance.
func WithFilter(keep func(Instance) bool) WatchOption {
	return func(o *watchOptions) { o.filters = append(o.filters, keep) }
}

// Filter returns a function that applies opts' tag, metadata and custom
// filters to a set of instances, for backends that implement [Watcher].
// The returned function does not modify its argument; when opts filter
// nothing it returns its argument unchanged.
func Filter(opts ...WatchOption) func([]Instance) []Instance {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.tags) == 0 && len(o.meta) == 0 && len(o.filters) == 0 {
		return func(in []Instance) []Instance { return in }
	}
	match := func(i Instance) bool {
		for _, t := range o.tags {
			if !i.HasTag(t) {
				return false
			}
		}
		for k, v := range o.meta {
			if got, ok := i.Meta[k]; !ok || got != v {
				return false
			}
		}
		for _, keep := range o.filters {
			if !keep(i) {
				return false
			}
		}
		return true
	}
	return func(in []Instance) []Instance {
		out := make([]Instance, 0, len(in))
		for _, i := range in {
			if match(i) {
				out = append(out, i)
			}
		}
		return out
	}
}
