package messaging

import (
	"context"
	"database/sql"
	"testing"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// sqlDB is a PostgreSQL schema with an SQLStore and a business table,
// "effects", whose rows are the side effects tests count.
type sqlDB struct {
	db    *sql.DB
	store *SQLStore
}

func newSQLDB(t testing.TB) sqlDB {
	t.Helper()
	pg := vitamintest.StartPostgres(t)
	ctx := testCtx(t)
	if _, err := pg.DB.ExecContext(ctx, "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, msg_key TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	pg.DB.SetMaxOpenConns(32)
	pg.DB.SetMaxIdleConns(32)
	store, err := NewSQLStore(ctx, pg.DB, SQLStoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return sqlDB{db: pg.DB, store: store}
}

// effect is the business change, made in the message's transaction.
func (d sqlDB) effect(ctx context.Context, tx *sql.Tx, key string) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO effects (msg_key) VALUES ($1)", key)
	return err
}

func (d sqlDB) count(t testing.TB, key string) int {
	t.Helper()
	var n int
	if err := d.db.QueryRowContext(testCtx(t), "SELECT count(*) FROM effects WHERE msg_key = $1", key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (d sqlDB) total(t testing.TB) (rows, keys int) {
	t.Helper()
	if err := d.db.QueryRowContext(testCtx(t), "SELECT count(*), count(DISTINCT msg_key) FROM effects").Scan(&rows, &keys); err != nil {
		t.Fatal(err)
	}
	return rows, keys
}
