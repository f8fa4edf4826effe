package config_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/resilience"
)

// A dynamic property: its value follows the configuration while the
// service runs, and a value that fails validation is rejected.
func ExampleInt() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A MemorySource stands in for Consul KV here.
	remote := config.NewMemorySource(map[string]any{"db.pool.max": "10"})
	rejected := make(chan struct{})
	cfg, err := config.Load(ctx, config.Layers{
		Defaults: map[string]any{"db.pool.max": 5},
		Sources:  []config.Source{remote},
	}, config.WithErrorHandler(func(err error) {
		fmt.Println("rejected:", err)
		rejected <- struct{}{}
	}))
	if err != nil {
		panic(err)
	}
	watching := make(chan error)
	go func() { watching <- cfg.Watch(ctx) }()

	pool := config.Int(cfg, "db.pool.max", 5, config.Between(1, 100))
	fmt.Println("pool:", pool.Get())

	changed := make(chan struct{})
	pool.OnChange(func(old, new int) {
		fmt.Printf("pool: %d -> %d\n", old, new)
		changed <- struct{}{}
	})
	remote.Set("db.pool.max", "500") // out of range: rejected, 10 stays
	<-rejected
	remote.Set("db.pool.max", "25")
	<-changed
	fmt.Println("pool:", pool.Get())

	cancel()
	<-watching
	// Output:
	// pool: 10
	// rejected: config: value 500 for key "db.pool.max" rejected: config: invalid value: 500 is outside [1, 100]
	// pool: 10 -> 25
	// pool: 25
}

// Bind follows a whole struct, validated as one: a reader never sees some
// fields old and some new.
func ExampleBind() {
	type Pool struct {
		Min     int           `yaml:"min"`
		Max     int           `yaml:"max"`
		MaxIdle time.Duration `yaml:"max_idle"`
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	remote := config.NewMemorySource(nil)
	cfg, err := config.Load(ctx, config.Layers{
		Defaults: map[string]any{"db": map[string]any{"pool": map[string]any{"min": 1, "max": 10, "max_idle": "30s"}}},
		Sources:  []config.Source{remote},
	})
	if err != nil {
		panic(err)
	}
	watching := make(chan error)
	go func() { watching <- cfg.Watch(ctx) }()

	pool := config.Bind[Pool](cfg, "db.pool", config.Validate(func(p *Pool) error {
		if p.Min > p.Max {
			return errors.New("min above max")
		}
		return nil
	}))
	fmt.Printf("%+v\n", *pool.Get())

	changed := make(chan struct{})
	pool.OnChange(func(_, new *Pool) {
		fmt.Printf("%+v\n", *new)
		close(changed)
	})
	remote.Replace(map[string]any{"db.pool.min": "20"}) // above max: rejected
	remote.Replace(map[string]any{"db.pool.min": "20", "db.pool.max": "40", "db.pool.max_idle": "1m"})
	<-changed

	cancel()
	<-watching
	// Output:
	// {Min:1 Max:10 MaxIdle:30s}
	// {Min:20 Max:40 MaxIdle:1m0s}
}

// The case dynamic properties come from: a database pool whose size
// changes at run time, without a restart.
func ExampleInt_poolSize() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	remote := config.NewMemorySource(nil) // Consul KV, in a service
	cfg, err := config.Load(ctx, config.Layers{Sources: []config.Source{remote}})
	if err != nil {
		panic(err)
	}
	watching := make(chan error)
	go func() { watching <- cfg.Watch(ctx) }()

	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test")
	if err != nil {
		panic(err)
	}
	defer db.Close()

	maxOpen := config.Int(cfg, "db.pool.max_open", 10, config.Between(1, 1000))
	maxIdle := config.Int(cfg, "db.pool.max_idle", 2, config.Between(0, 1000))
	db.SetMaxOpenConns(maxOpen.Get())
	db.SetMaxIdleConns(maxIdle.Get())
	changed := make(chan struct{})
	maxOpen.OnChange(func(_, n int) {
		db.SetMaxOpenConns(n)
		changed <- struct{}{}
	})
	maxIdle.OnChange(func(_, n int) {
		db.SetMaxIdleConns(n)
		changed <- struct{}{}
	})
	fmt.Println("max open:", db.Stats().MaxOpenConnections)

	remote.Replace(map[string]any{"db.pool.max_open": "40", "db.pool.max_idle": "10"})
	<-changed
	<-changed
	fmt.Println("max open:", db.Stats().MaxOpenConnections)

	cancel()
	<-watching
	// Output:
	// max open: 10
	// max open: 40
}

// A policy registry following the "resilience" keys of the configuration:
// each change is decoded strictly, validated as a whole by
// Registry.Update and applied at once, or rejected whole while the last
// good policies stay.
func ExampleFollow() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	remote := config.NewMemorySource(nil) // Consul KV, in a service
	rejected := make(chan struct{})
	cfg, err := config.Load(ctx, config.Layers{
		Defaults: map[string]any{"resilience": resilience.Config{
			Default: resilience.Policy{Timeout: time.Second, Retry: &resilience.Retry{MaxAttempts: 2}},
		}},
		Sources: []config.Source{remote},
	}, config.WithErrorHandler(func(err error) {
		fmt.Println("rejected:", err)
		rejected <- struct{}{}
	}))
	if err != nil {
		panic(err)
	}
	watching := make(chan error)
	go func() { watching <- cfg.Watch(ctx) }()

	registry, err := resilience.NewRegistry(resilience.Config{})
	if err != nil {
		panic(err)
	}
	// In a service, one line: config.Follow(cfg, "resilience", registry.Update).
	// Here, each applied change is also announced.
	applied := make(chan struct{}, 1)
	err = config.Follow(cfg, "resilience", func(c resilience.Config) error {
		if err := registry.Update(c); err != nil {
			return err
		}
		applied <- struct{}{}
		return nil
	})
	if err != nil {
		panic(err)
	}
	<-applied
	show := func() {
		e := registry.For("orders", "pkg.Orders/Get")
		fmt.Println(e.Name(), e.Policy().Timeout, e.Policy().Retry.MaxAttempts)
	}
	show()

	remote.Set("resilience.default.retry.max_atempts", "5") // a typo
	<-rejected
	remote.Replace(map[string]any{"resilience.default.retry.max_attempts": "0"}) // out of range
	<-rejected
	// A method's override, spelled so that it survives every layer.
	remote.Replace(map[string]any{
		"resilience.default.retry.max_attempts":                         "3",
		"resilience.overrides.orders_pkg_orders_get.timeout":            "250ms",
		"resilience.overrides.orders_pkg_orders_get.retry.max_attempts": "1",
	})
	<-applied
	show()

	cancel()
	<-watching
	// Output:
	// orders 1s 2
	// rejected: config: change under "resilience" rejected: resilience.default.retry.max_atempts: config: unknown key (the keys here are backoff, jitter, max_attempts, max_backoff, multiplier, on)
	// rejected: config: change under "resilience" rejected: resilience: invalid configuration: default.retry.max_attempts = 0: must be at least 1
	// orders/pkg.Orders/Get 250ms 1
}

// Layers, lowest first: defaults, a file, live sources, the environment.
func ExampleLoad() {
	cfg, err := config.Load(context.Background(), config.Layers{
		Defaults:  map[string]any{"http.addr": ":8080", "log.level": "info"},
		EnvPrefix: "ORDERS_",
	}, config.WithEnviron(func() []string { return []string{"ORDERS_LOG_LEVEL=debug"} }))
	if err != nil {
		panic(err)
	}
	s := cfg.Snapshot()
	for _, k := range s.Keys() {
		v, _ := s.Get(k)
		fmt.Println(k, "=", v)
	}
	// Output:
	// http.addr = :8080
	// log.level = debug
}
