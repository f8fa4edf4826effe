package consul_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

const wait = 15 * time.Second

// source returns a Source on c under a prefix named after the test.
func source(t testing.TB, c *vitamintest.Consul, cfg consul.Config) *consul.Source {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "test/" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if cfg.Consul == nil {
		cfg.Consul = &api.Config{Address: c.Addr}
	}
	if cfg.MaxBackoff == 0 {
		cfg.Backoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	s, err := consul.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func put(t testing.TB, c *vitamintest.Consul, key, value string) {
	t.Helper()
	if _, err := c.Client.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func del(t testing.TB, c *vitamintest.Consul, key string) {
	t.Helper()
	if _, err := c.Client.KV().Delete(key, nil); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
}

func load(t testing.TB, l config.Layers, opts ...config.Option) *config.Config {
	t.Helper()
	cfg, err := config.Load(context.Background(), l, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cfg.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return cfg
}

func equal[T comparable](p *config.Property[T], want T) func() error {
	return func() error {
		if got := p.Get(); got != want {
			return fmt.Errorf("%s = %v, want %v", p.Key(), got, want)
		}
		return nil
	}
}

func TestNewRejectsInvalidSettings(t *testing.T) {
	for _, tc := range []struct {
		cfg   consul.Config
		field string
	}{
		{consul.Config{}, "Config.Prefix"},
		{consul.Config{Prefix: "a", WaitTime: time.Hour}, "Config.WaitTime"},
		{consul.Config{Prefix: "a", Backoff: -1}, "Config.Backoff"},
		{consul.Config{Prefix: "a", Backoff: time.Second, MaxBackoff: time.Millisecond}, "Config.MaxBackoff"},
		{consul.Config{Prefix: "a", LoadTimeout: -1}, "Config.LoadTimeout"},
		{consul.Config{Prefix: "a", Consul: &api.Config{Address: "gopher://127.0.0.1:8500"}}, "Config.Consul"},
	} {
		_, err := consul.New(tc.cfg)
		var fe *config.FieldError
		if !errors.Is(err, config.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != tc.field ||
			!strings.Contains(err.Error(), tc.field) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := consul.New(consul.Config{Prefix: "a", Backoff: time.Minute}); err != nil {
		t.Errorf("Backoff above the default MaxBackoff: %v; want MaxBackoff to follow it", err)
	}
}

func TestPrecedenceAcrossAllFourLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.toml")
	if err := os.WriteFile(file, []byte("[db]\nhost = \"file\"\nuser = \"file\"\npool = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := source(t, agent, consul.Config{})
	prefix := "test/" + t.Name() + "/"
	put(t, agent, prefix+"db/user", "consul")
	put(t, agent, prefix+"db/pool", "3")
	cfg := load(t, config.Layers{
		Defaults:  map[string]any{"db.host": "default", "db.user": "default", "db.pool": 1, "db.name": "default"},
		File:      file,
		Sources:   []config.Source{src},
		EnvPrefix: "APP_",
	}, config.WithEnviron(func() []string { return []string{"APP_DB_POOL=4"} }))

	want := map[string]string{"db.name": "default", "db.host": "file", "db.user": "consul", "db.pool": "4"}
	for k, w := range want {
		if v, _ := cfg.Snapshot().Get(k); fmt.Sprint(v) != w {
			t.Errorf("%s = %v, want %s", k, v, w)
		}
	}
	// Consul changes win over the file, not over the environment.
	host := config.String(cfg, "db.host", "")
	pool := config.Int(cfg, "db.pool", 0)
	put(t, agent, prefix+"db/host", "consul")
	put(t, agent, prefix+"db/pool", "30")
	vitamintest.Eventually(t, wait, equal(host, "consul"))
	if pool.Get() != 4 {
		t.Errorf("db.pool = %d, want 4 from the environment", pool.Get())
	}
	// Deleted from Consul: the file's value comes back.
	del(t, agent, prefix+"db/host")
	vitamintest.Eventually(t, wait, equal(host, "file"))
}

func TestPutUpdatesPropertyOnceAndDeleteRestoresDefault(t *testing.T) {
	src := source(t, agent, consul.Config{})
	prefix := "test/" + t.Name() + "/"
	cfg := load(t, config.Layers{Sources: []config.Source{src}})
	pool := config.Int(cfg, "db.pool.max", 10)
	type change struct{ Old, New int }
	changes := make(chan change, 10)
	pool.OnChange(func(old, new int) { changes <- change{old, new} })
	next := func() change {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(wait):
			t.Fatal("OnChange not called")
			return change{}
		}
	}

	put(t, agent, prefix+"db/pool/max", "25")
	if got := next(); got != (change{10, 25}) {
		t.Errorf("OnChange%v, want {10 25}", got)
	}
	put(t, agent, prefix+"db/pool/max", "25") // written again, unchanged
	put(t, agent, prefix+"db/other", "x")
	vitamintest.Eventually(t, wait, func() error {
		if !cfg.Snapshot().Exists("db.other") {
			return errors.New("db.other not there yet")
		}
		return nil
	})
	del(t, agent, prefix+"db/pool/max")
	if got := next(); got != (change{25, 10}) {
		t.Errorf("OnChange%v, want {25 10}", got)
	}
	if cfg.Snapshot().Exists("db.pool.max") {
		t.Error("db.pool.max still in the snapshot after delete")
	}
	select {
	case c := <-changes:
		t.Errorf("unexpected OnChange%v", c)
	default:
	}
}

func TestInvalidValueInConsulIsRejected(t *testing.T) {
	src := source(t, agent, consul.Config{})
	prefix := "test/" + t.Name() + "/"
	put(t, agent, prefix+"timeout", "2s")
	reported := make(chan error, 10)
	cfg := load(t, config.Layers{Sources: []config.Source{src}},
		config.WithErrorHandler(func(err error) { reported <- err }))
	timeout := config.Duration(cfg, "timeout", time.Second, config.Between(time.Millisecond, time.Minute))

	for _, bad := range []string{"fast", "1h"} {
		put(t, agent, prefix+"timeout", bad)
		select {
		case err := <-reported:
			var re *config.RejectedError
			if !errors.As(err, &re) || re.Key != "timeout" || re.Value != bad {
				t.Errorf("reported %v, want a rejection of timeout=%s", err, bad)
			}
		case <-time.After(wait):
			t.Fatalf("rejection of %q not reported", bad)
		}
		if got := timeout.Get(); got != 2*time.Second {
			t.Errorf("timeout = %v, want the last good 2s", got)
		}
	}
	put(t, agent, prefix+"timeout", "3s")
	vitamintest.Eventually(t, wait, equal(timeout, 3*time.Second))
}

func TestMissingPrefixIsEmpty(t *testing.T) {
	src := source(t, agent, consul.Config{})
	data, err := src.Load(context.Background())
	if err != nil || len(data) != 0 {
		t.Fatalf("Load = %v, %v; want an empty layer", data, err)
	}
}

func TestAgentStoppedAndRestartedLosesNoChange(t *testing.T) {
	c := vitamintest.StartConsul(t)
	src := source(t, c, consul.Config{})
	prefix := "test/" + t.Name() + "/"
	put(t, c, prefix+"pool", "5")
	cfg := load(t, config.Layers{Sources: []config.Source{src}})
	pool := config.Int(cfg, "pool", 1)
	mode := config.String(cfg, "mode", "none")
	put(t, c, prefix+"pool", "6")
	vitamintest.Eventually(t, wait, equal(pool, 6))

	c.Stop()
	vitamintest.Eventually(t, wait, func() error {
		if !src.Stale() || !cfg.Stale() {
			return errors.New("source not reported stale")
		}
		return nil
	})
	if pool.Get() != 6 {
		t.Errorf("while Consul is down: pool = %d, want the last good 6", pool.Get())
	}

	// A dev agent forgets its keys: the operator's automation writes them
	// again, and keeps changing them.
	c.Restart(t)
	put(t, c, prefix+"mode", "fast")
	for i := 7; i <= 30; i++ {
		put(t, c, prefix+"pool", strconv.Itoa(i))
	}
	vitamintest.Eventually(t, wait, equal(pool, 30))
	vitamintest.Eventually(t, wait, equal(mode, "fast"))
	if src.Stale() || cfg.Stale() {
		t.Error("still stale after Consul came back")
	}
}

func TestACLTokenIsUsedForBlockingQueries(t *testing.T) {
	// The test agent's own client takes its token from the environment.
	t.Setenv("CONSUL_HTTP_TOKEN", "root-token")
	c := vitamintest.StartConsul(t, vitamintest.ConsulHCL(`acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = "root-token" }
}`))
	os.Unsetenv("CONSUL_HTTP_TOKEN")
	acl := c.Client.ACL()
	policy, _, err := acl.PolicyCreate(&api.ACLPolicy{Name: "orders-config",
		Rules: `key_prefix "config/orders/" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := acl.TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, c, "config/orders/pool", "5")

	anonymous := source(t, c, consul.Config{Prefix: "config/orders"})
	// Consul filters what a token may not read out of a listing.
	if data, err := anonymous.Load(context.Background()); err != nil || len(data) != 0 {
		t.Fatalf("Load without a token = %v, %v; want nothing", data, err)
	}

	src := source(t, c, consul.Config{Prefix: "config/orders",
		Consul: &api.Config{Address: c.Addr, Token: token.SecretID}})
	cfg := load(t, config.Layers{Sources: []config.Source{src}})
	pool := config.Int(cfg, "pool", 1)
	if pool.Get() != 5 {
		t.Fatalf("pool = %d, want 5", pool.Get())
	}
	put(t, c, "config/orders/pool", "9")
	vitamintest.Eventually(t, wait, equal(pool, 9))
	if src.Stale() {
		t.Error("source stale: its blocking queries were refused")
	}
}
