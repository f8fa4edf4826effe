package config

import (
	"fmt"
	"reflect"

	"github.com/knadh/koanf/v2"
)

// Snapshot is the configuration at one moment: all layers merged. It is
// immutable and safe for concurrent use; a change builds a new Snapshot,
// so reading several keys from one Snapshot gives a consistent view.
type Snapshot struct {
	k       *koanf.Koanf
	flat    map[string]any
	version uint64
}

func newSnapshot(k *koanf.Koanf, version uint64) *Snapshot {
	return &Snapshot{k: k, flat: k.All(), version: version}
}

// Version numbers snapshots: each change makes a higher one.
func (s *Snapshot) Version() uint64 { return s.version }

// Get returns the value of key, or of all keys under it as a nested map,
// and whether it exists. The value is a copy.
func (s *Snapshot) Get(key string) (any, bool) {
	v := s.k.Get(key)
	return v, v != nil
}

// Exists reports whether key, or a key under it, is set.
func (s *Snapshot) Exists(key string) bool {
	return s.k.Exists(key)
}

// Keys returns all flat keys, sorted.
func (s *Snapshot) Keys() []string { return s.k.Keys() }

// All returns a copy of all keys and values, with flat keys.
func (s *Snapshot) All() map[string]any { return s.k.All() }

// Unmarshal decodes the keys under prefix ("" for all) into out, a
// non-nil pointer to a struct, a map, a slice or a scalar. Decoding is
// strict, as described in the package documentation under "Decoding": a
// struct's keys are its fields' `yaml` tags, a key under prefix that names
// no field is an error, and so is a value of the wrong type; every such key
// is reported, as a *KeyError, in one error. Strings are read as numbers,
// booleans, durations ("250ms") and lists ("a,b") where the field needs
// one, since the environment and Consul KV hold only strings. Fields
// without a key keep the value they had in out.
func (s *Snapshot) Unmarshal(prefix string, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("config: Unmarshal(%q) needs a non-nil pointer, not %T", prefix, out)
	}
	return decodeValue(prefix, s.k.Get(prefix), rv.Elem())
}
