package config

import (
	"cmp"
	"errors"
	"maps"
	"slices"
	"time"
)

// Rejection is a rejected change kept for an operator: the last one of
// each property key, Follow or Bind prefix, or layer, until a later change
// there is accepted. It is plain data.
type Rejection struct {
	// Time is when the change was rejected.
	Time time.Time
	// Prefix is the property's key or the prefix of Bind or Follow; empty
	// for a layer.
	Prefix string
	// Layer names the layer whose whole update was rejected, such as
	// "file:app.yaml" for a file that does not parse; empty otherwise.
	Layer string
	// Key is the key at fault: for a struct decoded strictly, the first
	// unknown or badly typed key under Prefix (such as
	// "resilience.default.retry.max_atempts"); otherwise Prefix.
	Key string
	// Reason says why, naming every key at fault.
	Reason string
	// Err is the *RejectedError that was logged and reported.
	Err error
}

func newRejection(e *RejectedError) Rejection {
	r := Rejection{Time: time.Now(), Prefix: e.Key, Layer: e.Layer, Key: e.Key, Err: e}
	if e.Err != nil {
		r.Reason = e.Err.Error()
	}
	if ke := (*KeyError)(nil); errors.As(e.Err, &ke) {
		r.Key = ke.Key
	}
	return r
}

func rejectionKey(key, layer string) string {
	if key == "" {
		return "\x00" + layer
	}
	return key
}

// Rejections returns the changes that are rejected now: for each property
// key, Follow or Bind prefix and layer, the last rejected change, unless a
// later change there has since been accepted (which clears it), sorted by
// prefix and layer. What the configuration's layers hold under these
// prefixes is not what is in effect: the last good value is.
func (c *Config) Rejections() []Rejection {
	c.rejMu.Lock()
	defer c.rejMu.Unlock()
	return slices.SortedFunc(maps.Values(c.rejected), func(a, b Rejection) int {
		return cmp.Or(cmp.Compare(a.Prefix, b.Prefix), cmp.Compare(a.Layer, b.Layer))
	})
}
