package messaging

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"slices"
	"sync/atomic"
	"time"
)

// Dialect is the SQL flavour of an SQLStore's statements.
type Dialect string

// Dialects an SQLStore and an Outbox can speak, both tested by Vitamin
// against real servers.
const (
	// DialectPostgres: PostgreSQL 12 or later ($1 placeholders,
	// INSERT ... ON CONFLICT DO NOTHING, LISTEN/NOTIFY with the pgx
	// driver).
	DialectPostgres Dialect = "postgres"
	// DialectMySQL: MySQL 8 or MariaDB 10.6 or later (? placeholders,
	// INSERT IGNORE, SKIP LOCKED). The relay polls.
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
//
// A Consumer settles messages in batches with it (ConsumerConfig.CommitBatch):
// one transaction per batch, the keys inserted in one statement, a
// savepoint per message taken when its handler first calls Message.Tx; a
// failing handler is rolled back to its savepoint and its key removed, the
// batch commits once, and the messages are acknowledged after the commit.
//
// Each worker holds a connection for its batch: give the pool at least
// ConsumerConfig.Workers idle connections (db.SetMaxIdleConns; database/sql
// keeps 2 by default), or it closes a connection after most batches and the
// next one opens another, which halves the throughput. The consumer logs a
// warning once when it sees that happen.
type SQLStore struct {
	db          *sql.DB
	cfg         SQLStoreConfig
	insert      string
	insertBatch string // PostgreSQL: every key of a batch at once
	deleteKey   string
	purge       string

	idleClosed int64        // db.Stats().MaxIdleClosed when NewSQLStore ran
	batches    atomic.Int64 // begun
	churnTold  atomic.Bool  // warning has reported
}

var _ Store = (*SQLStore)(nil)

// sqlSettings checks db and fills in and checks the table (default
// defTable) and dialect (default DialectPostgres) of the SQL Config named
// config; the dialect's value is checked where its statements are chosen.
func sqlSettings(db *sql.DB, config string, table *string, dialect *Dialect, defTable string) error {
	if db == nil {
		return invalid("db", nil, "is nil")
	}
	if *table == "" {
		*table = defTable
	}
	if !tableName.MatchString(*table) {
		return invalid(config+".Table", *table, "is not a plain (optionally schema-qualified) identifier")
	}
	if *dialect == "" {
		*dialect = DialectPostgres
	}
	return nil
}

// NewSQLStore returns an SQLStore over db, creating its table unless
// cfg.SkipCreateTable.
func NewSQLStore(ctx context.Context, db *sql.DB, cfg SQLStoreConfig) (*SQLStore, error) {
	if err := sqlSettings(db, "SQLStoreConfig", &cfg.Table, &cfg.Dialect, "vitamin_processed_messages"); err != nil {
		return nil, err
	}
	s := &SQLStore{db: db, cfg: cfg, idleClosed: db.Stats().MaxIdleClosed}
	var create string
	switch cfg.Dialect {
	case DialectPostgres:
		s.insert = "INSERT INTO " + cfg.Table + " (msg_key, processed_at) VALUES ($1, $2) ON CONFLICT (msg_key) DO NOTHING"
		s.purge = "DELETE FROM " + cfg.Table + " WHERE processed_at < $1"
		s.insertBatch = "INSERT INTO " + cfg.Table + " (msg_key, processed_at) SELECT k, $2 FROM unnest($1::text[]) AS u(k) ORDER BY k " +
			"ON CONFLICT (msg_key) DO NOTHING RETURNING msg_key"
		s.deleteKey = "DELETE FROM " + cfg.Table + " WHERE msg_key = $1"
		create = "CREATE TABLE IF NOT EXISTS " + cfg.Table + " (msg_key VARCHAR(255) PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL)"
	case DialectMySQL:
		s.insert = "INSERT IGNORE INTO " + cfg.Table + " (msg_key, processed_at) VALUES (?, ?)"
		s.deleteKey = "DELETE FROM " + cfg.Table + " WHERE msg_key = ?"
		s.purge = "DELETE FROM " + cfg.Table + " WHERE processed_at < ?"
		create = "CREATE TABLE IF NOT EXISTS " + cfg.Table + " (msg_key VARCHAR(255) PRIMARY KEY, processed_at DATETIME(6) NOT NULL)"
	default:
		return nil, invalid("SQLStoreConfig.Dialect", cfg.Dialect, "is not one of postgres, mysql")
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
	if err := checkSQLKey(key); err != nil {
		return nil, err
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

func checkSQLKey(key string) error {
	if len(key) > 255 {
		return fmt.Errorf("messaging: idempotency key of %d bytes exceeds the SQL store's 255", len(key))
	}
	return nil
}

var _ batchStore = (*SQLStore)(nil)

// poolChurnAfter is how many connections the pool may close for want of
// idle room, with at least one for every fifty batches, before warning
// reports it.
const poolChurnAfter = 16

// warning reports, once, that the pool keeps closing the connections
// that batches have just used (SetMaxIdleConns below the workers).
func (s *SQLStore) warning() error {
	if s.churnTold.Load() {
		return nil
	}
	n := s.db.Stats().MaxIdleClosed - s.idleClosed
	if n < poolChurnAfter || n < s.batches.Load()/50 || !s.churnTold.CompareAndSwap(false, true) {
		return nil
	}
	return fmt.Errorf("messaging: the SQL store's database/sql pool closed %d connections for want of idle room since NewSQLStore; "+
		"call db.SetMaxIdleConns with at least ConsumerConfig.Workers so that batches reuse their connections", n)
}

func (s *SQLStore) begin(ctx context.Context) (storeBatch, error) {
	s.batches.Add(1)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("messaging: begin: %w", err)
	}
	return &sqlBatch{s: s, tx: tx, ctx: ctx}, nil
}

// sqlBatch is one transaction holding a batch of messages.
type sqlBatch struct {
	s   *SQLStore
	tx  *sql.Tx
	ctx context.Context // the worker's, for the savepoints Message.Tx takes
	err error           // a savepoint failed: the transaction is lost
}

const sqlSavepoint = "vitamin_msg"

func (b *sqlBatch) claim(ctx context.Context, msgs []*Message, _ time.Duration) []error {
	errs := make([]error, len(msgs))
	first := make(map[string]int, len(msgs)) // key → the message that claims it
	keys := make([]string, 0, len(msgs))
	for i, m := range msgs {
		if errs[i] = checkSQLKey(m.Key); errs[i] != nil {
			continue
		}
		if _, ok := first[m.Key]; ok {
			errs[i] = &ClaimedError{Key: m.Key} // twice in the batch: its first delivery decides
			continue
		}
		first[m.Key] = i
		keys = append(keys, m.Key)
	}
	inserted, err := b.insertKeys(ctx, keys)
	for key, i := range first {
		switch {
		case err != nil:
			errs[i] = err
		case inserted[key]:
			msgs[i].tx, msgs[i].batch = b.tx, b
		default:
			errs[i] = ErrDuplicate
		}
	}
	return errs
}

// insertKeys inserts keys in sorted order, so that two batches sharing
// keys wait for each other instead of deadlocking, and returns those
// that were not there.
func (b *sqlBatch) insertKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	inserted := make(map[string]bool, len(keys))
	if len(keys) == 0 {
		return inserted, nil
	}
	now := time.Now().UTC()
	if b.s.insertBatch != "" {
		rows, err := b.tx.QueryContext(ctx, b.s.insertBatch, keys, now)
		if err != nil {
			return nil, fmt.Errorf("messaging: insert keys into %s: %w", b.s.cfg.Table, err)
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return nil, err
			}
			inserted[k] = true
		}
		return inserted, rows.Err()
	}
	slices.Sort(keys)
	for _, k := range keys {
		res, err := b.tx.ExecContext(ctx, b.s.insert, k, now)
		if err != nil {
			return nil, fmt.Errorf("messaging: insert key into %s: %w", b.s.cfg.Table, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 1 {
			inserted[k] = true
		}
	}
	return inserted, nil
}

// savepoint marks the start of a message's changes.
func (b *sqlBatch) savepoint() {
	if b.err == nil {
		if _, err := b.tx.ExecContext(b.ctx, "SAVEPOINT "+sqlSavepoint); err != nil {
			b.err = fmt.Errorf("messaging: savepoint: %w", err)
		}
	}
}

func (b *sqlBatch) failed(ctx context.Context, m *Message) error {
	if b.err != nil {
		return b.err
	}
	if m.savepoint {
		if _, err := b.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sqlSavepoint); err != nil {
			b.err = fmt.Errorf("messaging: rollback to savepoint: %w", err)
			return b.err
		}
	}
	if _, err := b.tx.ExecContext(ctx, b.s.deleteKey, m.Key); err != nil {
		b.err = fmt.Errorf("messaging: delete key from %s: %w", b.s.cfg.Table, err)
		return b.err
	}
	return nil
}

func (b *sqlBatch) pipelined() bool { return false }

// succeeded releases m's savepoint, if it took one. On PostgreSQL that
// fails if a statement of the handler failed and the handler returned nil
// anyway: the transaction is aborted. m is then rolled back to its
// savepoint alone, instead of failing the commit of the whole batch.
func (b *sqlBatch) succeeded(ctx context.Context, m *Message) error {
	if !m.savepoint || b.err != nil {
		return nil
	}
	if _, err := b.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sqlSavepoint); err != nil {
		return fmt.Errorf("messaging: the handler returned nil, but its transaction cannot commit: %w", err)
	}
	return nil
}

func (b *sqlBatch) commit(context.Context, []*Message) (bool, error) {
	if b.err != nil {
		_ = b.tx.Rollback()
		return true, b.err
	}
	if err := b.tx.Commit(); err != nil {
		return true, err
	}
	return false, nil
}
