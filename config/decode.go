package config

import (
	"encoding"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// KeyError reports a key whose value could not be decoded into the
// setting it names: a key that names no field (it matches ErrUnknownKey),
// or a value of the wrong type or format (it matches ErrInvalidValue). It
// is not changed after it is returned, so it is safe for concurrent use.
type KeyError struct {
	// Key is the full key, such as "resilience.default.retry.max_attempts".
	Key string
	// Value is the raw value of the key.
	Value any
	// Err is the reason; it wraps ErrUnknownKey or ErrInvalidValue.
	Err error
}

// Error names the key and the reason.
func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *KeyError) Unwrap() error { return e.Err }

// keyErrors are all the keys a decoding found at fault, sorted by key.
type keyErrors []*KeyError

func (es keyErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es keyErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// decodeValue decodes raw, the value of key, into the value out points to,
// strictly (see Snapshot.Unmarshal). It returns nil or a keyErrors.
func decodeValue(key string, raw any, out reflect.Value) error {
	var d decoder
	d.value(key, raw, out)
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *KeyError) int { return strings.Compare(a.Key, b.Key) })
	return d.errs
}

// decodeAs decodes raw, the value of key, into a new T.
func decodeAs[T any](key string, raw any) (T, error) {
	var v T
	err := decodeValue(key, raw, reflect.ValueOf(&v).Elem())
	return v, err
}

type decoder struct{ errs keyErrors }

func (d *decoder) fail(key string, raw any, format string, args ...any) {
	d.errs = append(d.errs, &KeyError{Key: key, Value: raw, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidValue}, args...)...)})
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + Delim + k
}

// value decodes raw into v, which is settable. A nil raw (no key, or a
// key set to null) leaves v as it is.
func (d *decoder) value(key string, raw any, v reflect.Value) {
	if raw == nil {
		return
	}
	t := v.Type()
	rv := reflect.ValueOf(raw)
	switch t.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface:
	default:
		if rv.Type() == t { // a typed value, such as a default from a struct
			v.Set(rv)
			return
		}
	}
	if s, ok := raw.(string); ok && t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(key, raw, "%q is not a valid %s: %v", s, t, err)
		}
		return
	}
	if t == durationType {
		d.duration(key, raw, v)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(key, raw, v.Elem())
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.fail(key, raw, "%s is not a section: want the keys of a %s under it", show(raw), t)
			return
		}
		d.structure(key, m, v)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.fail(key, raw, "%s is not a section: want the keys of a %s under it", show(raw), t)
			return
		}
		if t.Key().Kind() != reflect.String {
			d.fail(key, raw, "cannot decode into %s: map keys must be strings", t)
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(m)))
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			e := reflect.New(t.Elem()).Elem()
			if old := v.MapIndex(reflect.ValueOf(k).Convert(t.Key())); old.IsValid() {
				e.Set(old)
			}
			d.value(joinKey(key, k), m[k], e)
			v.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
	case reflect.Slice:
		var items []any
		switch {
		case rv.Kind() == reflect.Slice:
			for i := range rv.Len() {
				items = append(items, rv.Index(i).Interface())
			}
		case rv.Kind() == reflect.String:
			// A list in one string, as the environment and Consul KV
			// give it: "a, b, c".
			if s := strings.TrimSpace(raw.(string)); s != "" {
				for _, p := range strings.Split(s, ",") {
					items = append(items, strings.TrimSpace(p))
				}
			}
		default:
			d.fail(key, raw, "%v is not a list (%s)", raw, t)
			return
		}
		s := reflect.MakeSlice(t, len(items), len(items))
		for i, it := range items {
			d.value(fmt.Sprintf("%s[%d]", key, i), it, s.Index(i))
		}
		v.Set(s)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			d.fail(key, raw, "cannot decode into %s", t)
			return
		}
		v.Set(rv)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := toInt(raw)
		if !ok || v.OverflowInt(n) {
			d.fail(key, raw, "%s is not %s", show(raw), typeName(t))
			return
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := toInt(raw)
		if !ok || n < 0 || v.OverflowUint(uint64(n)) {
			d.fail(key, raw, "%s is not %s", show(raw), typeName(t))
			return
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		f, ok := toFloat(raw)
		if !ok || v.OverflowFloat(f) {
			d.fail(key, raw, "%s is not %s", show(raw), typeName(t))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, err := parseBool(raw)
		if err != nil {
			d.fail(key, raw, "%s is not a bool (true or false)", show(raw))
			return
		}
		v.SetBool(b)
	case reflect.String:
		s, err := parseString(raw)
		if err != nil {
			d.fail(key, raw, "%s is not a string", show(raw))
			return
		}
		v.SetString(s)
	default:
		d.fail(key, raw, "cannot decode into %s", t)
	}
}

// duration accepts a string time.ParseDuration reads ("250ms", "1m30s")
// and 0. Any other number is an error: "timeout: 5" would be 5ns.
func (d *decoder) duration(key string, raw any, v reflect.Value) {
	if n, ok := toInt(raw); ok && n == 0 {
		if _, isString := raw.(string); !isString {
			v.SetInt(0)
			return
		}
	}
	s, ok := raw.(string)
	if !ok {
		d.fail(key, raw, "%v is not a duration: write it with a unit, such as \"250ms\" or \"1m30s\"", raw)
		return
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.fail(key, raw, "%q is not a duration such as \"250ms\" or \"1m30s\"", s)
		return
	}
	v.SetInt(int64(dur))
}

func show(raw any) string {
	if s, ok := raw.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(raw)
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer (" + t.String() + ")"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer (" + t.String() + ")"
	case reflect.Float32, reflect.Float64:
		return "a number (" + t.String() + ")"
	}
	return t.String()
}

// toInt reads an integer from any integer type, an integral float or a
// decimal string.
func toInt(raw any) (int64, bool) {
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := rv.Uint()
		return int64(u), u <= math.MaxInt64
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		return int64(f), f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64
	case reflect.String:
		n, err := strconv.ParseInt(strings.TrimSpace(rv.String()), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// toFloat reads a number from any integer or float type or a string.
func toFloat(raw any) (float64, bool) {
	rv := reflect.ValueOf(raw)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	case reflect.String:
		f, err := strconv.ParseFloat(strings.TrimSpace(rv.String()), 64)
		return f, err == nil
	}
	return 0, false
}

// structure decodes the keys of m into the struct v. A key that names no
// field is an error, unless the struct has an inline map, which takes it.
func (d *decoder) structure(key string, m map[string]any, v reflect.Value) {
	fs := fieldsOf(v.Type())
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f, ok := fs.byName[k]
		if !ok {
			f, ok = fs.byName[strings.ToLower(k)]
		}
		if ok {
			d.value(joinKey(key, k), m[k], fieldByIndex(v, f.index))
			continue
		}
		if fs.inlineMap != nil {
			im := fieldByIndex(v, fs.inlineMap)
			if im.IsNil() {
				im.Set(reflect.MakeMap(im.Type()))
			}
			e := reflect.New(im.Type().Elem()).Elem()
			d.value(joinKey(key, k), m[k], e)
			im.SetMapIndex(reflect.ValueOf(k).Convert(im.Type().Key()), e)
			continue
		}
		d.unknown(joinKey(key, k), m[k], fs.names)
	}
}

// unknown reports every leaf key under an unknown key, as a person wrote
// them.
func (d *decoder) unknown(key string, raw any, known []string) {
	if m, ok := raw.(map[string]any); ok && len(m) > 0 {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			d.unknown(joinKey(key, k), m[k], known)
		}
		return
	}
	d.errs = append(d.errs, &KeyError{Key: key, Value: raw,
		Err: fmt.Errorf("%w (the keys here are %s)", ErrUnknownKey, strings.Join(known, ", "))})
}

// fieldByIndex is v.FieldByIndex, allocating nil pointers to inline
// structs on the way.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

type fieldInfo struct {
	name      string
	index     []int
	omitEmpty bool
}

type structFields struct {
	list      []fieldInfo
	byName    map[string]fieldInfo // by name and by lower-case name
	names     []string             // sorted
	inlineMap []int                // index of a `yaml:",inline"` map, or nil
}

// fieldsOf lists the keys of struct type t the way gopkg.in/yaml reads
// them: the `yaml` tag's name (or the `json` tag's, or the field's name in
// lower case), fields tagged "-" and unexported fields left out, and the
// fields of a struct (or a map) tagged ",inline" read at this level.
func fieldsOf(t reflect.Type) structFields {
	fs := structFields{byName: map[string]fieldInfo{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() && !sf.Anonymous {
				continue
			}
			tag, ok := sf.Tag.Lookup("yaml")
			if !ok {
				tag = sf.Tag.Get("json")
			}
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(slices.Clone(index), i)
			var inline, omitEmpty bool
			for o := range strings.SplitSeq(opts, ",") {
				inline = inline || o == "inline"
				omitEmpty = omitEmpty || o == "omitempty"
			}
			if inline && !(sf.Type.Kind() == reflect.Pointer && !sf.IsExported()) {
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				switch {
				case ft.Kind() == reflect.Struct:
					walk(ft, idx)
					continue
				case sf.Type.Kind() == reflect.Map && sf.Type.Key().Kind() == reflect.String && fs.inlineMap == nil:
					fs.inlineMap = idx
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name)
			}
			if _, dup := fs.byName[name]; dup {
				continue // the outer field wins, as with yaml
			}
			f := fieldInfo{name: name, index: idx, omitEmpty: omitEmpty}
			fs.list = append(fs.list, f)
			fs.byName[name] = f
			if l := strings.ToLower(name); l != name {
				if _, dup := fs.byName[l]; !dup {
					fs.byName[l] = f
				}
			}
			fs.names = append(fs.names, name)
		}
	}
	walk(t, nil)
	slices.Sort(fs.names)
	return fs
}

// toMap turns a struct (or a map holding structs) into nested maps keyed
// as fieldsOf reads them, for Layers.Defaults. Nil pointers, nil maps and
// fields tagged omitempty that hold their zero value are left out; values
// that are not structs or maps stay as they are (a time.Duration stays a
// time.Duration).
func toMap(v reflect.Value) (any, bool) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil, false
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type().Implements(textMarshalerType) || reflect.PointerTo(v.Type()).Implements(textMarshalerType) {
			return v.Interface(), true
		}
		fs := fieldsOf(v.Type())
		out := map[string]any{}
		for _, f := range fs.list {
			fv, ok := fieldIfSet(v, f.index)
			if !ok || f.omitEmpty && fv.IsZero() {
				continue
			}
			if x, ok := toMap(fv); ok {
				out[f.name] = x
			}
		}
		if fs.inlineMap != nil {
			if im, ok := fieldIfSet(v, fs.inlineMap); ok {
				for _, k := range im.MapKeys() {
					if x, ok := toMap(im.MapIndex(k)); ok {
						out[k.String()] = x
					}
				}
			}
		}
		return out, true
	case reflect.Map:
		if v.IsNil() || v.Type().Key().Kind() != reflect.String {
			return v.Interface(), !v.IsNil()
		}
		out := make(map[string]any, v.Len())
		for _, k := range v.MapKeys() {
			if x, ok := toMap(v.MapIndex(k)); ok {
				out[k.String()] = x
			}
		}
		return out, true
	}
	return v.Interface(), true
}

// fieldIfSet is v.FieldByIndex, reporting false when a pointer to an
// inline struct on the way is nil.
func fieldIfSet(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}
