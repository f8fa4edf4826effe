package config

import (
	"github.com/go-viper/mapstructure/v2"
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
// pointer to a struct (fields named by their `koanf` tag or, without one,
// matched case-insensitively by name), a map or a scalar. Strings are
// converted to numbers, booleans and durations ("1.5s") where needed.
func (s *Snapshot) Unmarshal(prefix string, out any) error {
	return s.k.UnmarshalWithConf(prefix, out, koanf.UnmarshalConf{
		Tag:           "koanf",
		DecoderConfig: decoderConfig(),
	})
}

func decoderConfig() *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			mapstructure.TextUnmarshallerHookFunc()),
		WeaklyTypedInput: true,
		TagName:          "koanf",
	}
}
