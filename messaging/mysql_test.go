package messaging

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" database/sql driver

	"github.com/vitamin-go/vitamin/vitamintest"
)

// mysqlEnv names the environment variable with the DSN of the MySQL or
// MariaDB server the DialectMySQL tests use (go-sql-driver form, without a
// database name).
const mysqlEnv = "VITAMIN_TEST_MYSQL"

// startMySQL creates a database with a random name on the server (default
// root@tcp(127.0.0.1:3306)/) and returns a pool on it; the database is
// dropped when the test ends. Without a reachable server the test is
// skipped (or fails under CI).
func startMySQL(t testing.TB) *sql.DB {
	t.Helper()
	base := os.Getenv(mysqlEnv)
	if base == "" {
		base = "root@tcp(127.0.0.1:3306)/"
	}
	admin, err := sql.Open("mysql", base)
	if err != nil {
		t.Fatalf("%s: %v", mysqlEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx := testCtx(t)
	if err := admin.PingContext(ctx); err != nil {
		vitamintest.Missing(t, "MySQL or MariaDB at "+base+" ("+err.Error()+")", "start MariaDB 10.6+ or MySQL 8 on 127.0.0.1:3306 (or set "+mysqlEnv+")")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "vitamin_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	db, err := sql.Open("mysql", base+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(16)
	return db
}

// TestMySQLStoreInBatches: on MySQL, the batched SQL store commits the
// effects of the handlers that succeeded once each, and rolls back the
// one that fails to its savepoint, until it is dead-lettered.
func TestMySQLStoreInBatches(t *testing.T) {
	db := startMySQL(t)
	e := newEnv(t)
	ctx := testCtx(t)
	store, err := NewSQLStore(ctx, db, SQLStoreConfig{Dialect: DialectMySQL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, msg_key VARCHAR(255) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	const n, bad = 20, "m-3"
	p := publisher(t, e)
	for i := range n {
		if _, err := p.Publish(ctx, "events.my", order{ID: strconv.Itoa(i)}, WithMsgID("m-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fastConfig("mysql")
	cfg.Workers, cfg.MaxDeliver, cfg.CommitWait = 1, 3, 50*time.Millisecond
	c, err := NewConsumer(ctx, e.js, cfg, func(ctx context.Context, m *Message) error {
		if _, err := m.Tx().ExecContext(ctx, "INSERT INTO effects (msg_key) VALUES (?)", m.Key); err != nil {
			return err
		}
		if m.Key == bad {
			return errors.New("refused")
		}
		return nil
	}, WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	settled(t, e.js, "events", "mysql", 20*time.Second)
	deadLetters(t, e.js, 1)
	for i := range n {
		key := "m-" + strconv.Itoa(i)
		var got int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM effects WHERE msg_key = ?", key).Scan(&got); err != nil {
			t.Fatal(err)
		}
		want := 1
		if key == bad {
			want = 0
		}
		if got != want {
			t.Errorf("%s: %d effects, want %d", key, got, want)
		}
		if done, err := store.Processed(ctx, key); err != nil || done != (key != bad) {
			t.Errorf("%s: processed %v (%v)", key, done, err)
		}
	}
}

// TestMySQLOutbox: on MySQL, two polling relays publish every committed
// event once and none of a rolled-back transaction.
func TestMySQLOutbox(t *testing.T) {
	db := startMySQL(t)
	e := newEnv(t)
	ctx := testCtx(t)
	metrics := vitamintest.NewMetrics(t)
	ob, err := NewOutbox(ctx, db, OutboxConfig{Dialect: DialectMySQL}, WithMeterProvider(metrics.Provider))
	if err != nil {
		t.Fatal(err)
	}
	startRelay(t, ob, e.js, RelayConfig{PollInterval: 20 * time.Millisecond, BatchSize: 30})
	startRelay(t, ob, e.js, RelayConfig{PollInterval: 20 * time.Millisecond, BatchSize: 30})
	const n = 300
	for i := range n {
		if err := inTx(ctx, db, func(tx *sql.Tx) error {
			_, err := ob.Publish(ctx, tx, "events.my", order{ID: strconv.Itoa(i)}, WithMsgID("my-"+strconv.Itoa(i)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	refused := errors.New("refused")
	if err := inTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := ob.Publish(ctx, tx, "events.my", order{ID: "x"}, WithMsgID("my-rolled-back")); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if got := metrics.Sum(t, "vitamin.messaging.outbox.published"); got != n {
			return fmt.Errorf("published %d of %d", got, n)
		}
		return nil
	})
	ids := streamMsgIDs(t, e.js, "events")
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(ids) != n || len(seen) != n || seen["my-rolled-back"] {
		t.Errorf("stream holds %d messages with %d IDs (rolled back one there: %v), want %d", len(ids), len(seen), seen["my-rolled-back"], n)
	}
	if purged, err := ob.Purge(ctx, 0); err != nil || purged != n {
		t.Errorf("purged %d (%v), want %d", purged, err, n)
	}
}
