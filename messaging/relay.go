package messaging

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

// RelayConfig holds a Relay's settings: plain data, with yaml and json
// keys. The zero value is valid. It is safe to copy.
type RelayConfig struct {
	// BatchSize is the most events published in one round (one database
	// transaction). At most 10,000. Default 256.
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// PollInterval is how often the table is read when no notification
	// came. On PostgreSQL a commit wakes the relay at once (LISTEN/NOTIFY),
	// so polling only covers a lost listening connection. Default 1s.
	PollInterval time.Duration `yaml:"poll_interval,omitempty" json:"poll_interval,omitempty"`
	// Timeout bounds publishing one round's events and waiting for the
	// stream's acknowledgements; events not acknowledged in time are
	// published again in a later round. Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Backoff is the wait after a failed round; it doubles with each
	// failure up to MaxBackoff, jittered. Default 100ms.
	Backoff time.Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	// MaxBackoff caps the wait after failed rounds. Default 5s, or Backoff
	// if that is larger.
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// Retention is how long published events stay in the table; keep it
	// longer than the stream's duplicates window. Default 24h.
	Retention time.Duration `yaml:"retention,omitempty" json:"retention,omitempty"`
	// CleanupInterval is how often events older than Retention are
	// deleted. Default 1m.
	CleanupInterval time.Duration `yaml:"cleanup_interval,omitempty" json:"cleanup_interval,omitempty"`
	// DisableNotify polls only, without LISTEN/NOTIFY.
	DisableNotify bool `yaml:"disable_notify,omitempty" json:"disable_notify,omitempty"`
}

const maxRelayBatch = 10_000

func (c *RelayConfig) setDefaults() error {
	if err := cmp.Or(
		notNegative("RelayConfig.BatchSize", c.BatchSize),
		notNegative("RelayConfig.PollInterval", c.PollInterval),
		notNegative("RelayConfig.Timeout", c.Timeout),
		notNegative("RelayConfig.Retention", c.Retention),
		notNegative("RelayConfig.CleanupInterval", c.CleanupInterval),
	); err != nil {
		return err
	}
	if c.BatchSize > maxRelayBatch {
		return invalid("RelayConfig.BatchSize", c.BatchSize, "must be at most 10000")
	}
	if err := setBackoff("RelayConfig", &c.Backoff, &c.MaxBackoff, 100*time.Millisecond, 5*time.Second); err != nil {
		return err
	}
	c.BatchSize = cmp.Or(c.BatchSize, 256)
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.Retention = cmp.Or(c.Retention, 24*time.Hour)
	c.CleanupInterval = cmp.Or(c.CleanupInterval, time.Minute)
	return nil
}

// Relay publishes an Outbox's committed events to JetStream, each with its
// outbox ID as Nats-Msg-Id, and marks them sent. Several relays may run on
// one table (one per service instance): each round locks the rows it
// publishes (SELECT … FOR UPDATE SKIP LOCKED), so they share the work. A
// relay that dies between publishing and marking leaves its rows to be
// published again under the same IDs: the stream's duplicates window drops
// them, and a consumer's idempotency store recognises them after it.
// Events are published in table order within a round; rounds of several
// relays, and events whose publication failed, may overtake each other.
//
// Run it once; it is safe for concurrent use (Stop may be called from any
// goroutine).
type Relay struct {
	ob      *Outbox
	js      jetstream.JetStream
	cfg     RelayConfig
	backoff backoff.Backoff
	selectQ string
	markQ   string

	published metric.Int64Counter
	delay     metric.Float64Histogram
	attrs     metric.MeasurementOption

	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{}
	stopped  chan struct{}

	afterPublish func() // tests: runs after a round's events are acknowledged, before they are marked
}

// NewRelay returns a Relay that publishes ob's events through js. It logs
// and records metrics with the Outbox's WithLogger and WithMeterProvider.
// Invalid settings return a *FieldError.
func NewRelay(ob *Outbox, js jetstream.JetStream, cfg RelayConfig) (*Relay, error) {
	if ob == nil {
		return nil, invalid("ob", nil, "is nil")
	}
	if js == nil {
		return nil, invalid("js", nil, "is nil")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Relay{ob: ob, js: js, cfg: cfg,
		backoff: backoff.Backoff{Initial: cfg.Backoff, Max: cfg.MaxBackoff},
		stop:    make(chan struct{}), stopped: make(chan struct{})}
	t := ob.cfg.Table
	if ob.cfg.Dialect == DialectMySQL {
		r.selectQ = "SELECT seq, id, subject, headers, data, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) FROM " + t +
			" WHERE sent_at IS NULL ORDER BY sent_at, seq LIMIT ? FOR UPDATE SKIP LOCKED"
		r.markQ = "UPDATE " + t + " SET sent_at = NOW(6) WHERE seq IN "
	} else {
		r.selectQ = "SELECT seq, id, subject, headers, data, (EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000000)::bigint FROM " + t +
			" WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
		r.markQ = "UPDATE " + t + " SET sent_at = clock_timestamp() WHERE seq = ANY($1)"
	}
	m := ob.o.meter.Meter(instrumentation)
	var err error
	if r.published, err = m.Int64Counter("vitamin.messaging.outbox.published",
		metric.WithDescription("Outbox events published and marked sent.")); err != nil {
		return nil, err
	}
	if r.delay, err = m.Float64Histogram("vitamin.messaging.outbox.delay", metric.WithUnit("s"),
		metric.WithDescription("Time from writing an event into the outbox to the stream's acknowledgement of it.")); err != nil {
		return nil, err
	}
	r.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String("vitamin.outbox.table", t)))
	return r, nil
}

// Run publishes events until ctx is done or Stop is called, then finishes
// the round in progress and returns nil. Run may be called once.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Relay.Run called twice", ErrClosed)
	}
	defer close(r.stopped)
	// The round in progress finishes even when ctx ends, within Timeout.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			r.closeStop()
		case <-r.stopped:
		}
	}()

	wake := make(chan struct{}, 1)
	var listening sync.WaitGroup
	if r.ob.cfg.Dialect == DialectPostgres && !r.cfg.DisableNotify {
		lctx, stopListening := context.WithCancel(rctx)
		defer listening.Wait()
		defer stopListening()
		listening.Go(func() { r.listen(lctx, wake) })
	}
	cleanup := time.NewTicker(r.cfg.CleanupInterval)
	defer cleanup.Stop()
	failures := 0
	for {
		n, err := r.round(rctx)
		wait := r.cfg.PollInterval
		switch {
		case err != nil:
			// An event that cannot be published (no stream captures its
			// subject) is retried with backoff; a commit still wakes the
			// relay, so the others are not held back by it.
			failures++
			r.log(rctx, "messaging: outbox relay round failed", err)
			wait = r.backoff.Delay(failures)
		case n == r.cfg.BatchSize:
			failures, wait = 0, 0 // more are waiting
		default:
			failures = 0
		}
		if wait == 0 {
			select {
			case <-r.stop:
				return nil
			default:
				continue
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-r.stop:
			timer.Stop()
			return nil
		case <-wake:
		case <-timer.C:
		case <-cleanup.C:
			if _, err := r.ob.Purge(rctx, r.cfg.Retention); err != nil {
				r.log(rctx, "messaging: outbox cleanup", err)
			}
		}
		timer.Stop()
	}
}

func (r *Relay) closeStop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Stop stops the relay after its round in progress and waits until Run has
// returned, or until ctx is done (then it returns ctx's error). Stop before
// Run prevents Run from publishing.
func (r *Relay) Stop(ctx context.Context) error {
	r.closeStop()
	if !r.running.Load() {
		return nil
	}
	select {
	case <-r.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Relay) log(ctx context.Context, msg string, err error) {
	if l := r.ob.o.logger; l != nil {
		l.WarnContext(ctx, msg, "table", r.ob.cfg.Table, "error", err)
	}
}

type outboxRow struct {
	seq  int64
	msg  *nats.Msg
	age  time.Duration // when read
	fut  jetstream.PubAckFuture
	sent bool
}

// round publishes up to BatchSize unsent events and marks those the
// stream acknowledged; it returns how many it read.
func (r *Relay) round(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*r.cfg.Timeout)
	defer cancel()
	// Read committed: the relay takes no gap locks (MySQL's repeatable
	// read would, and deadlock with the writers' inserts).
	tx, err := r.ob.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	if r.ob.cfg.Dialect == DialectPostgres {
		// The commit of the marks does not wait for the disk: a mark lost
		// in a database crash only publishes its event again, under the
		// same ID. The next round is not held back by a flush.
		if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit TO OFF"); err != nil {
			return 0, err
		}
	}
	rows, err := r.readRows(ctx, tx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	read := time.Now()
	var perr error
	for i := range rows {
		if rows[i].fut, err = r.js.PublishMsgAsync(rows[i].msg); err != nil {
			perr = err
			break
		}
	}
	deadline := time.NewTimer(r.cfg.Timeout)
	defer deadline.Stop()
	sent := make([]int64, 0, len(rows))
wait:
	for i := range rows {
		if rows[i].fut == nil {
			break
		}
		select {
		case <-rows[i].fut.Ok():
			rows[i].sent = true
			sent = append(sent, rows[i].seq)
		case err := <-rows[i].fut.Err():
			perr = cmp.Or(perr, err)
		case <-deadline.C:
			perr = cmp.Or(perr, error(jetstream.ErrAsyncPublishTimeout))
			break wait
		}
	}
	published := time.Since(read)
	if len(sent) > 0 && r.afterPublish != nil {
		r.afterPublish()
	}
	if len(sent) > 0 {
		if err := r.mark(ctx, tx, sent); err != nil {
			return 0, err
		}
		if err := tx.Commit(); err != nil {
			return 0, fmt.Errorf("messaging: commit outbox round: %w", err)
		}
		r.published.Add(ctx, int64(len(sent)), r.attrs)
		if r.delay.Enabled(ctx) {
			for i := range rows {
				if rows[i].sent {
					r.delay.Record(ctx, (rows[i].age + published).Seconds(), r.attrs)
				}
			}
		}
	}
	if perr != nil {
		return len(rows), fmt.Errorf("messaging: publish outbox events: %w", perr)
	}
	return len(rows), nil
}

func (r *Relay) readRows(ctx context.Context, tx *sql.Tx) ([]outboxRow, error) {
	res, err := tx.QueryContext(ctx, r.selectQ, r.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("messaging: read outbox %s: %w", r.ob.cfg.Table, err)
	}
	defer res.Close()
	var rows []outboxRow
	for res.Next() {
		var (
			row        outboxRow
			id, subj   string
			hdr        string
			data       []byte
			ageMicros  int64
			headerVals nats.Header
		)
		if err := res.Scan(&row.seq, &id, &subj, &hdr, &data, &ageMicros); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(hdr), &headerVals); err != nil {
			return nil, fmt.Errorf("messaging: outbox event %s: headers: %w", id, err)
		}
		if headerVals == nil {
			headerVals = nats.Header{}
		}
		headerSet(headerVals, HeaderMsgID, id)
		row.msg = &nats.Msg{Subject: subj, Header: headerVals, Data: data}
		row.age = time.Duration(ageMicros) * time.Microsecond
		rows = append(rows, row)
	}
	return rows, res.Err()
}

func (r *Relay) mark(ctx context.Context, tx *sql.Tx, seqs []int64) error {
	var err error
	if r.ob.cfg.Dialect == DialectMySQL {
		var b strings.Builder
		b.WriteString(r.markQ)
		b.WriteByte('(')
		for i, s := range seqs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(s, 10))
		}
		b.WriteByte(')')
		_, err = tx.ExecContext(ctx, b.String())
	} else {
		_, err = tx.ExecContext(ctx, r.markQ, seqs)
	}
	if err != nil {
		return fmt.Errorf("messaging: mark outbox events sent: %w", err)
	}
	return nil
}

// errCannotListen says that the driver is not pgx: the relay polls.
var errCannotListen = errors.New("messaging: the database/sql driver is not pgx; the relay polls without LISTEN")

// listen wakes the relay on each notification of the outbox's channel,
// reconnecting after failures, until ctx is done.
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for failures := 1; ; failures++ {
		err := r.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		r.log(ctx, "messaging: outbox relay listen (polling meanwhile)", err)
		if errors.Is(err, errCannotListen) || !backoff.Sleep(ctx, r.backoff.Delay(failures)) {
			return
		}
	}
}

func (r *Relay) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := r.ob.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var cause error
	_ = conn.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			cause = errCannotListen
			return nil
		}
		c := pc.Conn()
		if _, cause = c.Exec(ctx, "LISTEN "+r.ob.channel()); cause == nil {
			notify(wake) // read what was committed before listening
			for cause == nil {
				if _, cause = c.WaitForNotification(ctx); cause == nil {
					notify(wake)
				}
			}
		}
		// The connection listens: it must not go back to the pool.
		return driver.ErrBadConn
	})
	return cause
}

func notify(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}
