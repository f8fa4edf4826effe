package config

import (
	"fmt"
	"reflect"
)

// Follow makes a component follow the keys under prefix, live: it decodes
// them into a T, strictly (as Snapshot.Unmarshal does), and hands the
// value to apply, now and after every change under prefix. apply validates
// the value as a whole and applies it atomically, or returns an error and
// changes nothing, as resilience's Registry.Update and CallerLimiter.Update
// do, so that
//
//	err := config.Follow(cfg, "resilience", registry.Update)
//
// keeps a policy registry in step with the file, the environment and
// Consul KV, and neither package imports the other.
//
// Each change under prefix is applied whole or not at all: a key that
// names no field of T, a value of the wrong type, or an error from apply
// rejects the whole change (a change of three keys whose third is bad
// applies none of them); the component keeps its last good value, and the
// rejection is logged with the key and the reason, counted
// (vitamin.config.rejections), handed to the error handler as a
// *RejectedError and kept until a later change under prefix is accepted
// (see Config.Rejections). A change that decodes to the value last applied
// is not applied again. Keys that change together land in one change only
// if their layer changes them together: a file written at once, a Consul
// KV transaction, MemorySource.Replace.
//
// The value is decoded into a new T each time, so a key deleted from every
// layer takes T's zero value: give defaults in Layers.Defaults. A T whose
// zero value apply refuses (CallerLimits) must therefore be configured.
//
// Follow returns an error, and follows nothing, when the keys under prefix
// do not decode now or apply refuses them. apply runs on the goroutine
// that applies configuration changes (and, the first time, on Follow's);
// it must not block for long, nor create properties or call Follow on c.
func Follow[T any](c *Config, prefix string, apply func(T) error) error {
	f := &follower[T]{cfg: c, prefix: prefix, apply: apply}
	c.mu.Lock()
	defer c.mu.Unlock()
	raw := c.snap.Load().k.Get(prefix)
	v, err := decodeAs[T](prefix, raw)
	if err == nil {
		err = apply(v)
	}
	if err != nil {
		return fmt.Errorf("config: follow %q: %w", prefix, err)
	}
	f.raw, f.last = raw, v
	c.props = append(c.props, f)
	return nil
}

type follower[T any] struct {
	cfg    *Config
	prefix string
	apply  func(T) error

	// Guarded by Config.applyMu after registration.
	raw  any // the raw value last seen under prefix
	last T   // the value last applied
}

func (f *follower[T]) refresh(s *Snapshot) func() {
	raw := s.k.Get(f.prefix)
	if reflect.DeepEqual(raw, f.raw) {
		return nil
	}
	f.raw = raw
	v, err := decodeAs[T](f.prefix, raw)
	if err == nil && !reflect.DeepEqual(v, f.last) {
		err = f.apply(v)
	}
	if err != nil {
		f.cfg.reject(&RejectedError{Key: f.prefix, Value: raw, Err: err})
		return nil
	}
	f.last = v
	f.cfg.accepted(f.prefix, "")
	f.cfg.log.Debug("config applied", "prefix", f.prefix, "version", s.version)
	return nil
}
