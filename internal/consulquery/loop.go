package consulquery

import (
	"context"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

// MaxWaitTime is Consul's own cap on the WaitTime of a blocking query.
const MaxWaitTime = 10 * time.Minute

// Query runs one read with q, which carries ctx already
// (q.WithContext(ctx)); it is the shape of the consul/api read methods, such
// as Health().Service or KV().List, closed over their other arguments.
type Query[T any] func(ctx context.Context, q *api.QueryOptions) (T, *api.QueryMeta, error)

// Config holds the settings of a [Loop]. It is plain data, safe to copy.
type Config struct {
	// Datacenter to read; empty means the client's.
	Datacenter string
	// AllowStale lets any server answer, not only the leader.
	AllowStale bool
	// WaitTime bounds one blocking query; at most MaxWaitTime.
	WaitTime time.Duration
	// Backoff is the wait after each failure in a row.
	Backoff backoff.Backoff
	// StartIndex is the index of an answer the caller already has (from a
	// first read); the first query blocks on it. 0: the first query
	// answers at once.
	StartIndex uint64
	// What names what the query reads, in log messages: "the service's
	// health", "the KV prefix".
	What string
	// Logger receives the first failure of a run, the recovery and index
	// resets; give it the caller's attributes (the service, the prefix).
	// Nil is silent.
	Logger *slog.Logger
}

// Round is the outcome of one query. It is a value; Answer is the query's
// own result, handed over.
type Round[T any] struct {
	// Answer is what the query returned; the zero value when Err is set.
	Answer T
	// Err is the query's error: the caller should serve its last good
	// answer, marked stale. The next query starts from index 0 after a
	// backoff.
	Err error
	// Failures counts the failures in a row, this one included; 0 for an
	// answer.
	Failures int
	// Recovered is set on the first answer after failures.
	Recovered bool
	// Changed is set when the answer may differ from the previous one:
	// the query did not block (index 0) or Consul's index moved. A
	// blocking query that ran out its WaitTime answers with the index it
	// waited on and Changed false.
	Changed bool
	// Reset is set when the answer's index is lower than the last
	// answer's, failures in between or not: whatever answers has lost the
	// state the earlier answers came from (a restarted agent in dev mode,
	// servers restored from a snapshot). The answer is handed over as
	// usual; the next query starts from index 0. An answer without an
	// index (0) is never a reset.
	Reset bool
	// LastConfirmed is when the last answer came; zero before the first.
	LastConfirmed time.Time
}

// Loop is a sequence of blocking queries; see the package documentation.
//
// Loop is not safe for concurrent use; one goroutine owns it and calls
// Next in a loop.
type Loop[T any] struct {
	cfg   Config
	query Query[T]
	log   *slog.Logger

	index         uint64
	lastIndex     uint64 // of the last answer that had one; kept across failures
	failures      int
	pause         time.Duration // before the next query
	bound         time.Duration // of the next query's wait; 0: WaitTime
	lastConfirmed time.Time
}

// New returns a loop that reads with query.
func New[T any](cfg Config, query Query[T]) *Loop[T] {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loop[T]{cfg: cfg, query: query, log: log, index: cfg.StartIndex, lastIndex: cfg.StartIndex}
}

// Next waits as the last round asks (a backoff after a failure, or the
// pause given to Reread), runs one query and returns its outcome. It
// returns false, and no round, once ctx is done.
func (l *Loop[T]) Next(ctx context.Context) (Round[T], bool) {
	if l.pause > 0 && !backoff.Sleep(ctx, l.pause) {
		return Round[T]{}, false
	}
	l.pause = 0
	waited := l.index
	wait := l.cfg.WaitTime
	if l.bound > 0 && (wait == 0 || l.bound < wait) {
		wait = l.bound
	}
	l.bound = 0
	q := (&api.QueryOptions{
		Datacenter: l.cfg.Datacenter,
		AllowStale: l.cfg.AllowStale,
		WaitIndex:  waited,
		WaitTime:   wait,
	}).WithContext(ctx)
	answer, meta, err := l.query(ctx, q)
	if ctx.Err() != nil {
		return Round[T]{}, false
	}
	if err != nil {
		l.failures++
		l.index = 0
		l.pause = l.cfg.Backoff.Delay(l.failures)
		if l.failures == 1 {
			l.log.Warn("consul: cannot read "+l.cfg.What+"; serving the last good answer as stale",
				"last_confirmed", l.lastConfirmed, "error", err)
		}
		return Round[T]{Err: err, Failures: l.failures, LastConfirmed: l.lastConfirmed}, true
	}
	r := Round[T]{Answer: answer, Recovered: l.failures > 0}
	if r.Recovered {
		l.log.Info("consul: reading "+l.cfg.What+" again", "failures", l.failures)
		l.failures = 0
	}
	l.lastConfirmed = time.Now()
	r.LastConfirmed = l.lastConfirmed
	var next uint64
	if meta != nil {
		next = meta.LastIndex
	}
	r.Changed = waited == 0 || next != waited
	r.Reset = next != 0 && next < l.lastIndex
	switch {
	case r.Reset:
		l.log.Info("consul: the index went backwards; starting over from 0", "from", l.lastIndex, "to", next)
		l.index = 0
	case next == 0:
		l.index = 1 // never block on 0: that would not block at all
	default:
		l.index = next
	}
	if next != 0 {
		l.lastIndex = next
	}
	return r, true
}

// WaitAtMost bounds the wait of the next query to d (if that is shorter
// than WaitTime): for a caller that wants to hear of a change as usual but
// must look again by a deadline of its own. The bound applies to one query.
func (l *Loop[T]) WaitAtMost(d time.Duration) {
	l.bound = max(d, time.Millisecond)
}

// Reread makes the next query start from index 0, after waiting d: for a
// caller that doubts an answer and wants a fresh one without waiting for a
// change.
func (l *Loop[T]) Reread(d time.Duration) {
	l.index = 0
	l.pause = d
}

// Index returns the index the next query blocks on (0: it answers at once).
func (l *Loop[T]) Index() uint64 { return l.index }
