package vitamintest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names the environment variable that holds the DSN of the
// PostgreSQL server tests use.
const PostgresEnv = "VITAMIN_TEST_POSTGRES"

// DefaultPostgresDSN is the server tests use when PostgresEnv is not set.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

const postgresHow = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or set " + PostgresEnv + " to a server's DSN)"

// Postgres is a fresh schema on a PostgreSQL server, made for one test and
// dropped when it ends.
type Postgres struct {
	// DSN connects to the server with the schema first on the search_path,
	// so unqualified table names land in it.
	DSN string
	// Schema is the schema's name.
	Schema string
	// DB is a pool on DSN ("pgx" driver), closed when the test ends.
	DB *sql.DB
}

// StartPostgres creates a schema with a random name on the server named by
// VITAMIN_TEST_POSTGRES (default DefaultPostgresDSN) and returns a pool
// whose connections use it. The schema and everything in it are dropped
// when the test ends. Without a reachable server the test is skipped (or
// fails under CI).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		base = DefaultPostgresDSN
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("vitamintest: %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		Missing(t, "PostgreSQL at "+redact(base)+" ("+err.Error()+")", postgresHow)
	}

	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "vitamin_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("vitamintest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("vitamintest: drop schema %s: %v", schema, err)
		}
	})

	dsn, err := withSearchPath(base, schema)
	if err != nil {
		t.Fatalf("vitamintest: %s: %v", PostgresEnv, err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("vitamintest: open %s: %v", redact(dsn), err)
	}
	// Registered after the schema's cleanup, so it runs before it: the
	// pool's connections are gone when the schema is dropped.
	t.Cleanup(func() { db.Close() })
	return &Postgres{DSN: dsn, Schema: schema, DB: db}
}

// withSearchPath adds search_path=schema to a URL-form DSN; pgx sends
// unknown parameters to the server as run-time settings.
func withSearchPath(dsn, schema string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redact hides a password in a DSN, for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the configured DSN"
	}
	return u.Redacted()
}
