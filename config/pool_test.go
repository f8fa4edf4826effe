package config_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// The motivating case: the size of a real PostgreSQL pool follows a
// property while connections are in use.
func TestPoolSizeFollowsPropertyOnPostgres(t *testing.T) {
	pg := vitamintest.StartPostgres(t)
	db := pg.DB
	remote := config.NewMemorySource(map[string]any{"db.pool.max": 2})
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{remote}})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, cfg)
	maxOpen := config.Int(cfg, "db.pool.max", 10, config.Between(1, 50))
	db.SetMaxOpenConns(maxOpen.Get())
	maxOpen.OnChange(func(_, n int) { db.SetMaxOpenConns(n) })

	ctx := context.Background()
	hold := func(n int) []*sql.Conn {
		t.Helper()
		var conns []*sql.Conn
		for range n {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.PingContext(ctx); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		return conns
	}
	release := func(conns []*sql.Conn) {
		for _, c := range conns {
			c.Close()
		}
	}

	// With 2 allowed, a third caller waits for a connection.
	conns := hold(2)
	third := make(chan error, 1)
	go func() {
		c, err := db.Conn(ctx)
		if err == nil {
			err = c.Close()
		}
		third <- err
	}()
	vitamintest.Eventually(t, wait, func() error {
		if s := db.Stats(); s.WaitCount < 1 {
			return fmt.Errorf("third caller not waiting: %+v", s)
		}
		return nil
	})

	// Raised at run time: new callers get new connections at once, so
	// five are held together. (database/sql does not hand one to a caller
	// already waiting until a connection is released.)
	remote.Set("db.pool.max", "5")
	vitamintest.Eventually(t, wait, func() error {
		if s := db.Stats(); s.MaxOpenConnections != 5 {
			return fmt.Errorf("max open %d, want 5", s.MaxOpenConnections)
		}
		return nil
	})
	conns = append(conns, hold(3)...)
	if s := db.Stats(); s.OpenConnections != 5 || s.MaxOpenConnections != 5 {
		t.Errorf("stats %+v, want 5 open of at most 5", s)
	}
	// The server sees them too.
	var n int
	if err := conns[0].QueryRowContext(ctx,
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = current_user AND backend_type = 'client backend'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("pg_stat_activity shows %d client connections, want at least 5", n)
	}
	release(conns)
	if err := <-third; err != nil {
		t.Fatal(err)
	}

	// Lowered, and an invalid value rejected: the pool shrinks to 1.
	remote.Set("db.pool.max", "0")
	remote.Set("db.pool.max", "1")
	vitamintest.Eventually(t, wait, func() error {
		if s := db.Stats(); s.MaxOpenConnections != 1 || s.OpenConnections > 1 {
			return fmt.Errorf("stats %+v, want at most 1 open", s)
		}
		return nil
	})
}

func BenchmarkPropertyGet(b *testing.B) {
	cfg, err := config.Load(context.Background(), config.Layers{Defaults: map[string]any{"db.pool.max": 10}})
	if err != nil {
		b.Fatal(err)
	}
	pool := config.Int(cfg, "db.pool.max", 5)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n += pool.Get()
		}
		if n == 0 {
			b.Fatal("no value")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := 0
			for pb.Next() {
				n += pool.Get()
			}
			_ = n
		})
	})
	type Pool struct{ Min, Max int }
	bound := config.Bind[Pool](cfg, "db.pool")
	b.Run("bind", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n += bound.Get().Max
		}
		if n == 0 {
			b.Fatal("no value")
		}
	})
}
