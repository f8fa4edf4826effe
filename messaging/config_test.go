package messaging

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

// TestConfigKeysAreSnakeCase: every field of a Config a person may write in
// a file has the same yaml and json key, the field's name in snake case.
func TestConfigKeysAreSnakeCase(t *testing.T) {
	snake := func(s string) string {
		var b strings.Builder
		for i, r := range s {
			if unicode.IsUpper(r) && i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		}
		return b.String()
	}
	for _, v := range []any{PublisherConfig{}, ConsumerConfig{}, StreamConfig{}, MemoryStoreConfig{}, KVStoreConfig{}, SQLStoreConfig{}, OutboxConfig{}, RelayConfig{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			want := snake(f.Name)
			for _, tag := range []string{"yaml", "json"} {
				if key, _, _ := strings.Cut(f.Tag.Get(tag), ","); key != want {
					t.Errorf("%s.%s: %s key %q, want %q", typ.Name(), f.Name, tag, key, want)
				}
			}
		}
	}
}

// TestMaxBackoffDefaultsToAtLeastBackoff: a Backoff above the default cap
// is not an error; the cap follows it.
func TestMaxBackoffDefaultsToAtLeastBackoff(t *testing.T) {
	cc := ConsumerConfig{Stream: "s", Durable: "d", Backoff: 2 * time.Minute}
	if err := cc.setDefaults(); err != nil || cc.MaxBackoff != 2*time.Minute {
		t.Errorf("consumer: MaxBackoff %v, %v; want 2m", cc.MaxBackoff, err)
	}
	pc := PublisherConfig{Backoff: 3 * time.Second}
	if err := pc.setDefaults(); err != nil || pc.MaxBackoff != 3*time.Second {
		t.Errorf("publisher: MaxBackoff %v, %v; want 3s", pc.MaxBackoff, err)
	}
	pc = PublisherConfig{}
	if err := pc.setDefaults(); err != nil || pc.Backoff != 50*time.Millisecond || pc.MaxBackoff != 2*time.Second {
		t.Errorf("publisher defaults: Backoff %v, MaxBackoff %v, %v; want 50ms and 2s", pc.Backoff, pc.MaxBackoff, err)
	}
}
