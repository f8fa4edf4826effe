package config_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vitamin-go/vitamin/config"
)

type base struct {
	Name string `yaml:"name" json:"name"`
}

type retrySettings struct {
	MaxAttempts int           `yaml:"max_attempts" json:"max_attempts"`
	Backoff     time.Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	Jitter      float64       `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	On          []string      `yaml:"on,omitempty" json:"on,omitempty"`
	Slots       uint          `yaml:"slots,omitempty" json:"slots,omitempty"`
}

type settings struct {
	base    `yaml:",inline"`
	Retry   *retrySettings    `yaml:"retry,omitempty" json:"retry,omitempty"`
	Level   slog.Level        `yaml:"level" json:"level"`
	Enabled bool              `yaml:"enabled" json:"enabled"`
	Tags    map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Secret  string            `yaml:"-" json:"-"`
}

// unmarshal decodes the keys of data (flat or nested) under "svc".
func unmarshal(t *testing.T, data map[string]any) (settings, error) {
	t.Helper()
	cfg, err := config.Load(context.Background(), config.Layers{Defaults: data})
	if err != nil {
		t.Fatal(err)
	}
	var s settings
	err = cfg.Snapshot().Unmarshal("svc", &s)
	return s, err
}

func TestUnmarshalReadsYAMLTagsAndStringsFromEveryLayer(t *testing.T) {
	want := settings{
		base:    base{Name: "orders"},
		Retry:   &retrySettings{MaxAttempts: 5, Backoff: 250 * time.Millisecond, Jitter: 0.5, On: []string{"timeout", "503"}, Slots: 7},
		Level:   slog.LevelDebug,
		Enabled: true,
		Tags:    map[string]string{"zone": "a"},
	}
	for name, data := range map[string]map[string]any{
		// As the environment and Consul KV give them: strings.
		"strings": {
			"svc.name": "orders", "svc.retry.max_attempts": "5", "svc.retry.backoff": "250ms",
			"svc.retry.jitter": "0.5", "svc.retry.on": "timeout, 503", "svc.retry.slots": " 7 ",
			"svc.level": "DEBUG", "svc.enabled": "true", "svc.tags.zone": "a",
		},
		// As YAML, JSON and TOML files give them.
		"typed": {"svc": map[string]any{
			"name": "orders", "level": "debug", "enabled": true, "tags": map[string]any{"zone": "a"},
			"retry": map[string]any{"max_attempts": 5.0, "backoff": "250ms", "jitter": 0.5, "on": []any{"timeout", 503}, "slots": int64(7)},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := unmarshal(t, data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalRejectsUnknownKeysAndWrongTypesNamingTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		data map[string]any
		key  string
		want error
		says string
	}{
		{"typo", map[string]any{"svc.retry.max_atempts": 3}, "svc.retry.max_atempts", config.ErrUnknownKey, "max_attempts"},
		{"field tagged -", map[string]any{"svc.secret": "x"}, "svc.secret", config.ErrUnknownKey, "unknown key"},
		{"unknown section", map[string]any{"svc.retry.limits.max": 3}, "svc.retry.limits.max", config.ErrUnknownKey, "unknown key"},
		{"not an int", map[string]any{"svc.retry.max_attempts": "abc"}, "svc.retry.max_attempts", config.ErrInvalidValue, `"abc" is not an integer (int)`},
		{"a fraction", map[string]any{"svc.retry.max_attempts": 2.5}, "svc.retry.max_attempts", config.ErrInvalidValue, "integer"},
		{"a bool for an int", map[string]any{"svc.retry.max_attempts": true}, "svc.retry.max_attempts", config.ErrInvalidValue, "integer"},
		{"negative uint", map[string]any{"svc.retry.slots": "-1"}, "svc.retry.slots", config.ErrInvalidValue, "non-negative"},
		{"not a number", map[string]any{"svc.retry.jitter": "half"}, "svc.retry.jitter", config.ErrInvalidValue, "a number (float64)"},
		{"duration without a unit", map[string]any{"svc.retry.backoff": 5}, "svc.retry.backoff", config.ErrInvalidValue, `such as "250ms"`},
		{"malformed duration", map[string]any{"svc.retry.backoff": "5 seconds"}, "svc.retry.backoff", config.ErrInvalidValue, "duration"},
		{"a value for a section", map[string]any{"svc.retry": "3"}, "svc.retry", config.ErrInvalidValue, "section"},
		{"bad text", map[string]any{"svc.level": "loud"}, "svc.level", config.ErrInvalidValue, "slog.Level"},
		{"bad bool", map[string]any{"svc.enabled": "maybe"}, "svc.enabled", config.ErrInvalidValue, "bool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unmarshal(t, tc.data)
			var ke *config.KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key || !errors.Is(err, tc.want) {
				t.Fatalf("Unmarshal = %v; want a *KeyError for %s matching %v", err, tc.key, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not start with the key %s or does not say %q", err, tc.key, tc.says)
			}
		})
	}

	// Every key at fault is named, in order.
	_, err := unmarshal(t, map[string]any{"svc.retry.max_attempts": "x", "svc.colour": "red", "svc.name": "ok"})
	want := `svc.colour: config: unknown key (the keys here are enabled, level, name, retry, tags); ` +
		`svc.retry.max_attempts: config: invalid value: "x" is not an integer (int)`
	if err == nil || err.Error() != want {
		t.Errorf("Unmarshal = %v\nwant %s", err, want)
	}
}

func TestUnmarshalDurations(t *testing.T) {
	for _, tc := range []struct {
		raw  any
		want time.Duration
	}{
		{"250ms", 250 * time.Millisecond}, {"1m30s", 90 * time.Second}, {0, 0}, {"0", 0}, {2 * time.Second, 2 * time.Second},
	} {
		got, err := unmarshal(t, map[string]any{"svc.retry.backoff": tc.raw})
		if err != nil || got.Retry.Backoff != tc.want {
			t.Errorf("backoff %v: %v, %v; want %v", tc.raw, got.Retry.Backoff, err, tc.want)
		}
	}
}

func TestDefaultsFromStructsUseYAMLTags(t *testing.T) {
	d := settings{base: base{Name: "orders"}, Level: slog.LevelWarn, Secret: "hidden",
		Retry: &retrySettings{MaxAttempts: 3, Backoff: time.Second}}
	for name, defaults := range map[string]any{
		"struct":         map[string]any{"svc": d},
		"struct pointer": map[string]any{"svc": &d},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(context.Background(), config.Layers{Defaults: defaults})
			if err != nil {
				t.Fatal(err)
			}
			// Inline fields at their parent's level, "-" and empty
			// omitempty fields left out.
			wantKeys := []string{"svc.enabled", "svc.level", "svc.name", "svc.retry.backoff", "svc.retry.max_attempts"}
			if diff := cmp.Diff(wantKeys, cfg.Snapshot().Keys()); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			var got settings
			if err := cfg.Snapshot().Unmarshal("svc", &got); err != nil {
				t.Fatal(err)
			}
			d := d
			d.Secret = ""
			if diff := cmp.Diff(d, got, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := config.Load(context.Background(), config.Layers{Defaults: d}); err != nil {
		t.Errorf("a struct as the whole defaults: %v", err)
	}
}
