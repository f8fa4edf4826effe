package config

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Property is a typed value of one key (or, from Bind, of all keys under a
// prefix) that follows the configuration. Get is lock-free and does not
// allocate. When the key is missing, the property holds its default; when
// the configured value does not parse or fails a validator, the change is
// rejected (see WithErrorHandler) and the property keeps its last good
// value. Property is safe for concurrent use.
//
// A property's value changes when a new snapshot is applied; two
// properties are not swapped together, so read a Snapshot or a Bind
// struct for several values that must be consistent.
type Property[T any] struct {
	key        string
	def        T
	decode     func(s *Snapshot, raw any) (T, error)
	validators []func(T) error
	equal      func(a, b T) bool
	cfg        *Config

	val atomic.Pointer[T]

	// Guarded by Config.applyMu after registration.
	raw  any
	seen bool

	mu        sync.Mutex
	listeners []*listener[T]
}

type listener[T any] struct{ fn func(old, new T) }

// PropertyOption configures a property.
type PropertyOption[T any] func(*Property[T])

// Validate adds a validator: a value for which fn returns an error is
// rejected. The default is not validated.
func Validate[T any](fn func(T) error) PropertyOption[T] {
	return func(p *Property[T]) { p.validators = append(p.validators, fn) }
}

// Between rejects values outside [lo, hi].
func Between[T cmp.Ordered](lo, hi T) PropertyOption[T] {
	return Validate(func(v T) error {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %v is outside [%v, %v]", ErrInvalidValue, v, lo, hi)
		}
		return nil
	})
}

// OneOf rejects values other than those given.
func OneOf[T comparable](allowed ...T) PropertyOption[T] {
	return Validate(func(v T) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("%w: %v is not one of %v", ErrInvalidValue, v, allowed)
		}
		return nil
	})
}

// Key returns the property's key (the prefix, for Bind).
func (p *Property[T]) Key() string { return p.key }

// Get returns the current value. It is lock-free and does not allocate.
func (p *Property[T]) Get() T { return *p.val.Load() }

// OnChange calls fn with the old and new values each time the value really
// changes (a change to an equal value, or a rejected one, does not call
// it). Callbacks run one at a time, in the order they were added, from the
// goroutine applying the change, after every property has its new value;
// they must not block for long. The returned function removes fn.
func (p *Property[T]) OnChange(fn func(old, new T)) (remove func()) {
	l := &listener[T]{fn: fn}
	p.mu.Lock()
	p.listeners = append(p.listeners, l)
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.listeners = slices.DeleteFunc(slices.Clone(p.listeners), func(x *listener[T]) bool { return x == l })
	}
}

func (p *Property[T]) refresh(s *Snapshot) func() {
	raw := s.k.Get(p.key)
	if p.seen && reflect.DeepEqual(raw, p.raw) {
		return nil
	}
	p.raw, p.seen = raw, true
	nv := p.def
	if raw != nil {
		v, err := p.decode(s, raw)
		if err == nil {
			for _, validate := range p.validators {
				if err = validate(v); err != nil {
					break
				}
			}
		}
		if err != nil {
			p.cfg.reject(&RejectedError{Key: p.key, Value: raw, Err: err})
			if p.val.Load() == nil {
				p.val.Store(&p.def) // a new property starts from its default
			}
			return nil
		}
		nv = v
	}
	p.cfg.accepted(p.key, "")
	cur := p.val.Load()
	if cur != nil && p.equal(*cur, nv) {
		return nil
	}
	p.val.Store(&nv)
	if cur == nil {
		return nil
	}
	old := *cur
	p.mu.Lock()
	ls := p.listeners
	p.mu.Unlock()
	if len(ls) == 0 {
		return nil
	}
	return func() {
		for _, l := range ls {
			l.fn(old, nv)
		}
	}
}

func newProperty[T any](c *Config, key string, def T, decode func(*Snapshot, any) (T, error), equal func(a, b T) bool, opts []PropertyOption[T]) *Property[T] {
	p := &Property[T]{key: key, def: def, decode: decode, equal: equal, cfg: c}
	for _, o := range opts {
		o(p)
	}
	c.register(p)
	return p
}

func same[T comparable](a, b T) bool { return a == b }

func deepEqual[T any](a, b T) bool { return reflect.DeepEqual(a, b) }

func scalar[T any](parse func(any) (T, error)) func(*Snapshot, any) (T, error) {
	return func(_ *Snapshot, raw any) (T, error) { return parse(raw) }
}

// Int returns a property holding key as an int: an integer, or a string
// such as "25". def is its value while the key is missing.
func Int(c *Config, key string, def int, opts ...PropertyOption[int]) *Property[int] {
	return newProperty(c, key, def, scalar(parseInt), same[int], opts)
}

// Float returns a property holding key as a float64: a number, or a
// string such as "0.25".
func Float(c *Config, key string, def float64, opts ...PropertyOption[float64]) *Property[float64] {
	return newProperty(c, key, def, scalar(parseFloat), same[float64], opts)
}

// Bool returns a property holding key as a bool: true or false, or a
// string strconv.ParseBool accepts.
func Bool(c *Config, key string, def bool, opts ...PropertyOption[bool]) *Property[bool] {
	return newProperty(c, key, def, scalar(parseBool), same[bool], opts)
}

// String returns a property holding key as a string; numbers and booleans
// are formatted.
func String(c *Config, key string, def string, opts ...PropertyOption[string]) *Property[string] {
	return newProperty(c, key, def, scalar(parseString), same[string], opts)
}

// Duration returns a property holding key as a time.Duration: a string
// time.ParseDuration accepts ("1.5s", "250ms") or a time.Duration.
func Duration(c *Config, key string, def time.Duration, opts ...PropertyOption[time.Duration]) *Property[time.Duration] {
	return newProperty(c, key, def, scalar(parseDuration), same[time.Duration], opts)
}

// Value returns a property of any type holding key, decoded as Snapshot's
// Unmarshal does: slices, maps, structs (strictly: an unknown key is an
// error), types implementing encoding.TextUnmarshaler (such as
// slog.Level), numbers from strings. Values are compared with
// reflect.DeepEqual to detect a change.
func Value[T any](c *Config, key string, def T, opts ...PropertyOption[T]) *Property[T] {
	return newProperty(c, key, def, func(_ *Snapshot, raw any) (T, error) {
		return decodeAs[T](key, raw)
	}, deepEqual[T], opts)
}

// Bind returns a property holding all keys under prefix ("" for the whole
// configuration) decoded into a T, strictly, as Snapshot.Unmarshal does:
// a key under prefix that names no field of T, or holds a value of the
// wrong type, rejects the change. Its value is a pointer to an immutable
// T, replaced as a whole when a key under prefix changes: validators see
// the whole struct, and a reader never sees some fields old and some new.
// Callers must not modify the T. While no key under prefix is set, Get
// returns a pointer to the zero T. To hand each new value to a component
// that validates and applies it (a policy registry), use Follow.
func Bind[T any](c *Config, prefix string, opts ...PropertyOption[*T]) *Property[*T] {
	return newProperty(c, prefix, new(T), func(s *Snapshot, _ any) (*T, error) {
		v := new(T)
		if err := s.Unmarshal(prefix, v); err != nil {
			return nil, err
		}
		return v, nil
	}, deepEqual[*T], opts)
}

func parseInt(raw any) (int, error) {
	switch v := raw.(type) {
	case int:
		return v, nil
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64, uint:
		n, err := strconv.ParseInt(fmt.Sprint(v), 10, strconv.IntSize)
		if err != nil {
			return 0, fmt.Errorf("%w: %v is out of range for an int", ErrInvalidValue, v)
		}
		return int(n), nil
	case float64:
		if v != math.Trunc(v) || v < math.MinInt || v > math.MaxInt {
			return 0, fmt.Errorf("%w: %v is not an integer", ErrInvalidValue, v)
		}
		return int(v), nil
	case float32:
		return parseInt(float64(v))
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", ErrInvalidValue, v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: %T is not an integer", ErrInvalidValue, raw)
}

func parseFloat(raw any) (float64, error) {
	switch v := raw.(type) {
	case float64:
		return v, nil
	case float32:
		return float64(v), nil
	case int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, uint:
		n, _ := strconv.ParseFloat(fmt.Sprint(v), 64)
		return n, nil
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not a number", ErrInvalidValue, v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: %T is not a number", ErrInvalidValue, raw)
}

func parseBool(raw any) (bool, error) {
	switch v := raw.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("%w: %q is not a boolean", ErrInvalidValue, v)
		}
		return b, nil
	}
	return false, fmt.Errorf("%w: %T is not a boolean", ErrInvalidValue, raw)
}

func parseString(raw any) (string, error) {
	switch v := raw.(type) {
	case string:
		return v, nil
	case bool, int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, uint, float32, float64:
		return fmt.Sprint(v), nil
	case fmt.Stringer:
		return v.String(), nil
	}
	return "", fmt.Errorf("%w: %T is not a string", ErrInvalidValue, raw)
}

func parseDuration(raw any) (time.Duration, error) {
	switch v := raw.(type) {
	case time.Duration:
		return v, nil
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not a duration such as \"1.5s\"", ErrInvalidValue, v)
		}
		return d, nil
	case int:
		if v == 0 {
			return 0, nil
		}
	}
	return 0, fmt.Errorf("%w: %v is not a duration such as \"1.5s\"", ErrInvalidValue, raw)
}
