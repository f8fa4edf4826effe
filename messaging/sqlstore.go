package messaging

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"time"
)

// Dialect is the SQL flavour of an SQLStore's statements.
type Dialect string

// Dialects an SQLStore can speak. Only PostgreSQL is tested by Vitamin.
const (
	// DialectPostgres: $1 placeholders, INSERT ... ON CONFLICT DO NOTHING.
	DialectPostgres Dialect = "postgres"
	// DialectSQLite: ? placeholders, INSERT ... ON CONFLICT DO NOTHING.
	DialectSQLite Dialect = "sqlite"
	// DialectMySQL: ? placeholders, INSERT IGNORE.
	DialectMySQL Dialect = "mysql"
)

// SQLStoreConfig holds an SQLStore's settings. The zero value is valid.
// It is plain data, safe to copy.
type SQLStoreConfig struct {
	// Table keeps the processed keys; it may be schema-qualified. Default
	// "vitamin_processed_messages".
	Table string `yaml:"table,omitempty" json:"table,omitempty"`
	// Dialect of the database. Default DialectPostgres.
	Dialect Dialect `yaml:"dialect,omitempty" json:"dialect,omitempty"`
	// SkipCreateTable does not create the table (CREATE TABLE IF NOT
	// EXISTS) in NewSQLStore; use it when migrations own the schema. The
	// table needs a unique key column "msg_key" (text, up to 255
	// characters) and a "processed_at" timestamp column.
	SkipCreateTable bool `yaml:"skip_create_table,omitempty" json:"skip_create_table,omitempty"`
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// SQLStore is a Store in a database/sql database, for exactly-once effects:
// Claim begins a transaction and inserts the key's row in it; the handler
// makes its business change in the same transaction (Message.Tx); Done
// commits both, Release rolls both back. A concurrent delivery of the same
// key waits on the row's lock and then sees it processed. It is safe for
// concurrent use.
type SQLStore struct {
	db     *sql.DB
	cfg    SQLStoreConfig
	insert string
	purge  string
}

var _ Store = (*SQLStore)(nil)

// NewSQLStore returns an SQLStore over db, creating its table unless
// cfg.SkipCreateTable.
func NewSQLStore(ctx context.Context, db *sql.DB, cfg SQLStoreConfig) (*SQLStore, error) {
	if db == nil {
		return nil, invalid("db", nil, "is nil")
	}
	if cfg.Table == "" {
		cfg.Table = "vitamin_processed_messages"
	}
	if !tableName.MatchString(cfg.Table) {
		return nil, invalid("SQLStoreConfig.Table", cfg.Table, "is not a plain (optionally schema-qualified) identifier")
	}
	if cfg.Dialect == "" {
		cfg.Dialect = DialectPostgres
	}
	s := &SQLStore{db: db, cfg: cfg}
	var create string
	switch cfg.Dialect {
	case DialectPostgres:
		s.insert = "INSERT INTO " + cfg.Table + " (msg_key, processed_at) VALUES ($1, $2) ON CONFLICT (msg_key) DO NOTHING"
		s.purge = "DELETE FROM " + cfg.Table + " WHERE processed_at < $1"
		create = "CREATE TABLE IF NOT EXISTS " + cfg.Table + " (msg_key VARCHAR(255) PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL)"
	case DialectSQLite:
		s.insert = "INSERT INTO " + cfg.Table + " (msg_key, processed_at) VALUES (?, ?) ON CONFLICT (msg_key) DO NOTHING"
		s.purge = "DELETE FROM " + cfg.Table + " WHERE processed_at < ?"
		create = "CREATE TABLE IF NOT EXISTS " + cfg.Table + " (msg_key VARCHAR(255) PRIMARY KEY, processed_at TIMESTAMP NOT NULL)"
	case DialectMySQL:
		s.insert = "INSERT IGNORE INTO " + cfg.Table + " (msg_key, processed_at) VALUES (?, ?)"
		s.purge = "DELETE FROM " + cfg.Table + " WHERE processed_at < ?"
		create = "CREATE TABLE IF NOT EXISTS " + cfg.Table + " (msg_key VARCHAR(255) PRIMARY KEY, processed_at DATETIME(6) NOT NULL)"
	default:
		return nil, invalid("SQLStoreConfig.Dialect", cfg.Dialect, "is not one of postgres, sqlite, mysql")
	}
	if !cfg.SkipCreateTable {
		if _, err := db.ExecContext(ctx, create); err != nil {
			return nil, fmt.Errorf("messaging: create table %s: %w", cfg.Table, err)
		}
	}
	return s, nil
}

// Claim implements Store. The lease is the transaction itself: it lasts
// until Done or Release, or until the connection dies.
func (s *SQLStore) Claim(ctx context.Context, key string, _ time.Duration) (Claim, error) {
	if len(key) > 255 {
		return nil, fmt.Errorf("messaging: idempotency key of %d bytes exceeds the SQL store's 255", len(key))
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("messaging: begin: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.insert, key, time.Now().UTC())
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("messaging: insert key into %s: %w", s.cfg.Table, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	if n == 0 {
		_ = tx.Rollback()
		return nil, ErrDuplicate
	}
	return &sqlClaim{tx: tx}, nil
}

// Processed reports whether key has been recorded as processed.
func (s *SQLStore) Processed(ctx context.Context, key string) (bool, error) {
	q := "SELECT 1 FROM " + s.cfg.Table + " WHERE msg_key = $1"
	if s.cfg.Dialect != DialectPostgres {
		q = "SELECT 1 FROM " + s.cfg.Table + " WHERE msg_key = ?"
	}
	var one int
	switch err := s.db.QueryRowContext(ctx, q, key).Scan(&one); err {
	case nil:
		return true, nil
	case sql.ErrNoRows:
		return false, nil
	default:
		return false, err
	}
}

// Purge deletes keys processed more than olderThan ago and returns how
// many. Run it periodically with a duration longer than the streams'
// retention, so that no redelivery can find its key gone.
func (s *SQLStore) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.purge, time.Now().UTC().Add(-olderThan))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type sqlClaim struct{ tx *sql.Tx }

func (c *sqlClaim) Tx() *sql.Tx                                 { return c.tx }
func (c *sqlClaim) Extend(context.Context, time.Duration) error { return nil }
func (c *sqlClaim) Done(context.Context) error                  { return c.tx.Commit() }
func (c *sqlClaim) Release(context.Context) error {
	if err := c.tx.Rollback(); err != nil && err != sql.ErrTxDone {
		return err
	}
	return nil
}
