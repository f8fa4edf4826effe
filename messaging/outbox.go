package messaging

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// OutboxConfig holds an Outbox's settings. The zero value is valid. It is
// plain data, safe to copy.
type OutboxConfig struct {
	// Table keeps the events until they are published; it may be
	// schema-qualified. Default "vitamin_outbox".
	Table string `yaml:"table,omitempty" json:"table,omitempty"`
	// Dialect of the database: DialectPostgres (the default) or
	// DialectMySQL (MySQL 8, MariaDB 10.6 or later).
	Dialect Dialect `yaml:"dialect,omitempty" json:"dialect,omitempty"`
	// SkipCreateTable does not create the table and its index in
	// NewOutbox; use it when migrations own the schema (see OutboxSchema).
	SkipCreateTable bool `yaml:"skip_create_table,omitempty" json:"skip_create_table,omitempty"`
}

// Outbox writes events into a table inside the caller's transaction, so
// that an event exists exactly when the business change that caused it
// committed; a Relay publishes them to JetStream. It is safe for
// concurrent use.
type Outbox struct {
	db     *sql.DB
	cfg    OutboxConfig
	o      publisherOptions
	tracer *tracingnats.Tracer // nil: WithoutTracing
	insert string
}

// NewOutbox returns an Outbox over db, creating its table unless
// cfg.SkipCreateTable. Options: WithCaller, WithCodec, WithTracing,
// WithoutTracing, WithLogger, WithMeterProvider (the last two are used by
// its relays). Invalid settings return a *FieldError.
func NewOutbox(ctx context.Context, db *sql.DB, cfg OutboxConfig, opts ...PublisherOption) (*Outbox, error) {
	if err := sqlSettings(db, "OutboxConfig", &cfg.Table, &cfg.Dialect, "vitamin_outbox"); err != nil {
		return nil, err
	}
	ob := &Outbox{db: db, cfg: cfg}
	var err error
	if ob.tracer, err = build(&ob.o, &ob.o.options, opts, PublisherOption.applyPublisher); err != nil {
		return nil, err
	}
	switch cfg.Dialect {
	case DialectPostgres:
		// The notification is sent when the transaction commits, and only
		// then; one statement writes the row and queues it.
		ob.insert = "WITH r AS (INSERT INTO " + cfg.Table + " (id, subject, headers, data, created_at) VALUES ($1, $2, $3, $4, clock_timestamp()) RETURNING 1) " +
			"SELECT pg_notify('" + ob.channel() + "', '') FROM r"
	case DialectMySQL:
		ob.insert = "INSERT INTO " + cfg.Table + " (id, subject, headers, data, created_at) VALUES (?, ?, ?, ?, NOW(6))"
	default:
		return nil, invalid("OutboxConfig.Dialect", cfg.Dialect, "is not one of postgres, mysql")
	}
	if !cfg.SkipCreateTable {
		for _, stmt := range OutboxSchema(cfg.Table, cfg.Dialect) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return nil, fmt.Errorf("messaging: create outbox table %s: %w", cfg.Table, err)
			}
		}
	}
	return ob, nil
}

// OutboxSchema returns the statements that create an outbox table and its
// indexes for dialect d (DialectMySQL, or else DialectPostgres), for
// migrations (OutboxConfig.SkipCreateTable). Each is safe to run again.
func OutboxSchema(table string, d Dialect) []string {
	index := strings.ReplaceAll(table, ".", "_") + "_unsent"
	switch d {
	case DialectMySQL:
		// MySQL has no partial index: unsent rows are found through
		// (sent_at, seq), where NULLs come first.
		return []string{"CREATE TABLE IF NOT EXISTS " + table + " (" +
			"seq BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(255) NOT NULL UNIQUE, subject VARCHAR(255) NOT NULL, " +
			"headers TEXT NOT NULL, data LONGBLOB NOT NULL, created_at DATETIME(6) NOT NULL, sent_at DATETIME(6) NULL, " +
			"INDEX " + index + " (sent_at, seq))"}
	default:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + table + " (" +
				"seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id VARCHAR(255) NOT NULL UNIQUE, subject TEXT NOT NULL, " +
				"headers TEXT NOT NULL, data BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL, sent_at TIMESTAMPTZ)",
			"CREATE INDEX IF NOT EXISTS " + index + " ON " + table + " (seq) WHERE sent_at IS NULL",
			"CREATE INDEX IF NOT EXISTS " + strings.ReplaceAll(table, ".", "_") + "_sent ON " + table + " (sent_at) WHERE sent_at IS NOT NULL",
		}
	}
}

// channel is the PostgreSQL notification channel of the table.
func (ob *Outbox) channel() string { return strings.ReplaceAll(ob.cfg.Table, ".", "_") }

// Publish encodes v and writes it into the outbox in tx, to be published
// to subject by a Relay after tx commits; if tx rolls back, nothing is
// published. It returns the event's ID, its Nats-Msg-Id: given with
// WithMsgID (an ID already in the outbox is an error) or generated. The
// message carries the same headers as one from a Publisher, the trace
// context of ctx included: the write runs in a producer span "publish
// <subject>". Publish makes one round trip to the database.
func (ob *Outbox) Publish(ctx context.Context, tx *sql.Tx, subject string, v any, opts ...PublishOption) (_ string, err error) {
	if tx == nil {
		return "", invalid("tx", nil, "is nil")
	}
	msg, err := buildMessage(&ob.o, subject, v, opts)
	if err != nil {
		return "", err
	}
	id := headerGet(msg.Header, HeaderMsgID)
	if len(id) > 255 {
		return "", invalid("WithMsgID", id, "is longer than 255 bytes")
	}
	if ob.tracer != nil {
		var span trace.Span
		ctx, span = ob.tracer.StartPublish(ctx, msg)
		defer func() { tracingnats.End(span, err) }()
	}
	hdr, err := json.Marshal(msg.Header)
	if err != nil {
		return "", err
	}
	if ob.cfg.Dialect == DialectPostgres {
		var ignored string
		err = tx.QueryRowContext(ctx, ob.insert, id, subject, string(hdr), msg.Data).Scan(&ignored)
	} else {
		_, err = tx.ExecContext(ctx, ob.insert, id, subject, string(hdr), msg.Data)
	}
	if err != nil {
		return "", fmt.Errorf("messaging: write event %s for %s into %s: %w", id, subject, ob.cfg.Table, err)
	}
	return id, nil
}

// buildMessage encodes v into a message for subject with the options' headers
// and a Nats-Msg-Id.
func buildMessage(o *publisherOptions, subject string, v any, opts []PublishOption) (*nats.Msg, error) {
	if subject == "" {
		return nil, invalid("subject", nil, "is empty")
	}
	data, ct, err := o.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("messaging: encode %T for %s: %w", v, subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 4)}
	msg.Header.Set(HeaderContentType, ct)
	if o.caller != "" {
		msg.Header.Set(HeaderCaller, o.caller)
	}
	for _, opt := range opts {
		opt(msg)
	}
	// The broker deduplicates on Nats-Msg-Id spelled exactly so.
	id := headerGet(msg.Header, HeaderMsgID)
	if id == "" {
		id = nuid.Next()
	}
	headerSet(msg.Header, HeaderMsgID, id)
	return msg, nil
}

// Purge deletes events published more than olderThan ago and returns how
// many. A Relay does it every RelayConfig.CleanupInterval.
func (ob *Outbox) Purge(ctx context.Context, olderThan time.Duration) (int64, error) {
	// The database's clock decides, as it wrote sent_at.
	q := "DELETE FROM " + ob.cfg.Table + " WHERE sent_at < clock_timestamp() - make_interval(secs => $1)"
	if ob.cfg.Dialect == DialectMySQL {
		q = "DELETE FROM " + ob.cfg.Table + " WHERE sent_at < NOW(6) - INTERVAL ? MICROSECOND"
	}
	arg := any(olderThan.Seconds())
	if ob.cfg.Dialect == DialectMySQL {
		arg = olderThan.Microseconds()
	}
	res, err := ob.db.ExecContext(ctx, q, arg)
	if err != nil {
		return 0, fmt.Errorf("messaging: purge %s: %w", ob.cfg.Table, err)
	}
	return res.RowsAffected()
}

// Pending returns the number of events not yet published.
func (ob *Outbox) Pending(ctx context.Context) (int64, error) {
	var n int64
	err := ob.db.QueryRowContext(ctx, "SELECT count(*) FROM "+ob.cfg.Table+" WHERE sent_at IS NULL").Scan(&n)
	return n, err
}
