package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// workerSlot is what the heartbeat sees of one worker: the message whose
// handler runs (without batches), or the messages of the batch it handles
// and of the one it settles.
type workerSlot struct {
	cur      atomic.Pointer[Message]
	mu       sync.Mutex
	batch    []*Message
	settling []*Message
}

// held returns the messages of the worker's batches.
func (s *workerSlot) held(buf []*Message) []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(append(buf, s.batch...), s.settling...)
}

// batchStore is a Store that settles several messages together.
type batchStore interface {
	Store
	begin(ctx context.Context) (storeBatch, error)
}

// storeBatch is one batch of a batchStore, used by one worker goroutine.
type storeBatch interface {
	// claim claims the keys of msgs, setting the claim (and the
	// transaction) of each message it claimed, and returns for each
	// message nil, ErrDuplicate (the key was done and committed), an
	// error matching ErrClaimed or another error.
	claim(ctx context.Context, msgs []*Message, lease time.Duration) []error
	// failed undoes the work of m, whose handler failed, and gives its key
	// up.
	failed(ctx context.Context, m *Message) error
	// commit records done, whose handlers succeeded, as processed. With
	// rolledBack their work is undone: they are to be redelivered. Otherwise an error says that some were not
	// recorded, though their work is done.
	commit(ctx context.Context, done []*Message) (rolledBack bool, err error)
	// succeeded is called when m's handler succeeded, before the next
	// message's handler runs. An error says that m's work cannot commit
	// after all: it is then undone with failed, as if the handler failed.
	succeeded(ctx context.Context, m *Message) error
	// pipelined says that commit may run while the worker goes on with its
	// next batch: nothing of this batch is held open meanwhile.
	pipelined() bool
}

// storeWarner is a batchStore that can see, while it runs, that it is set
// up badly (SQLStore: a pool without idle room for the workers); warning
// reports it, once.
type storeWarner interface {
	warning() error
}

// leaseKeeper is a Claim whose lease may lapse while its message waits in
// a batch: keep extends it if less than half of lease is left.
type leaseKeeper interface {
	keep(ctx context.Context, lease time.Duration) error
}

// batchWorker takes messages from work in batches of up to CommitBatch,
// waiting at most CommitWait for a batch to fill, until Stop.
func (c *Consumer) batchWorker(ctx context.Context, work <-chan jetstream.Msg, bs batchStore, slot *workerSlot) {
	buf := make([]jetstream.Msg, 0, c.cfg.CommitBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var settling sync.WaitGroup // the previous batch's pipelined commit
	defer settling.Wait()
	for {
		select {
		case <-c.stop: // before taking more: work holds none of ours
			return
		default:
		}
		select {
		case jm := <-work:
			buf = append(buf, jm)
		case <-c.stop:
			return
		}
		timer.Reset(c.cfg.CommitWait)
	fill:
		for len(buf) < c.cfg.CommitBatch {
			select {
			case jm := <-work:
				buf = append(buf, jm)
			case <-timer.C:
				break fill
			case <-c.stop:
				break fill
			}
		}
		timer.Stop()
		c.handleBatch(ctx, buf, bs, slot, &settling)
		clear(buf)
		buf = buf[:0]
	}
}

// handleBatch claims the keys of a batch, runs the handler of each
// claimed message in turn, redelivers or dead-letters the failed ones at
// once, commits the others and acknowledges them after the commit.
func (c *Consumer) handleBatch(ctx context.Context, jms []jetstream.Msg, bs batchStore, slot *workerSlot, settling *sync.WaitGroup) {
	now := time.Since(c.epoch)
	msgs := make([]*Message, len(jms))
	for i, jm := range jms {
		msgs[i] = c.message(jm)
		msgs[i].started = now
	}
	b, err := bs.begin(ctx)
	if err != nil {
		for _, m := range msgs {
			c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), fmt.Errorf("begin batch: %w", err))
		}
		return
	}
	if w, ok := bs.(storeWarner); ok && c.o.logger != nil {
		if err := w.warning(); err != nil {
			c.o.logger.Warn("messaging: idempotency store", "durable", c.cfg.Durable, "error", err)
		}
	}
	errs := b.claim(ctx, msgs, c.cfg.IdempotencyLease)
	// From here the heartbeat keeps the batch's messages alive.
	slot.mu.Lock()
	slot.batch = msgs
	slot.mu.Unlock()
	defer func() {
		slot.mu.Lock()
		slot.batch = nil
		slot.mu.Unlock()
	}()
	done := make([]*Message, 0, len(msgs))
	for i, m := range msgs {
		switch err := errs[i]; {
		case err == nil:
		case errors.Is(err, ErrDuplicate):
			continue
		default:
			c.claimFailed(ctx, m, err)
			continue
		}
		if k, ok := m.claim.(leaseKeeper); ok {
			if err := k.keep(ctx, c.cfg.IdempotencyLease); err != nil {
				c.claimFailed(ctx, m, err)
				errs[i] = err
				continue
			}
		}
		herr := c.handleOne(ctx, m)
		if herr == nil {
			if herr = b.succeeded(ctx, m); herr == nil {
				done = append(done, m)
				continue
			}
		}
		if err := b.failed(ctx, m); err != nil {
			c.log(ctx, slog.LevelWarn, "messaging: undo a failed message of a batch", m, err)
		}
		c.failed(ctx, m, herr)
	}
	if b.pipelined() {
		settling.Wait() // one batch settles behind the one being handled
		slot.mu.Lock()
		slot.settling = msgs
		slot.mu.Unlock()
		settling.Go(func() {
			c.settle(ctx, b, msgs, errs, done)
			slot.mu.Lock()
			slot.settling = nil
			slot.mu.Unlock()
		})
		return
	}
	c.settle(ctx, b, msgs, errs, done)
}

// settle commits a batch and acknowledges its messages, or redelivers
// them if the commit rolled their work back.
func (c *Consumer) settle(ctx context.Context, b storeBatch, msgs []*Message, errs []error, done []*Message) {
	rolledBack, err := b.commit(ctx, done)
	for i, m := range msgs {
		// A key found done was committed by another delivery, whatever
		// becomes of this batch.
		if errors.Is(errs[i], ErrDuplicate) {
			c.metrics.duplicates.Add(ctx, 1, c.metrics.addOpts...)
			c.ack(ctx, m)
		}
	}
	if rolledBack {
		cause := fmt.Errorf("commit: %w", err)
		for _, m := range done {
			c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), cause)
		}
		return
	}
	for _, m := range done {
		if err != nil {
			c.log(ctx, slog.LevelWarn, "messaging: mark message done", m, err)
		}
		c.metrics.processed.Add(ctx, 1, c.metrics.addOpts...)
		if c.o.beforeAck != nil && !c.o.beforeAck(m) {
			continue
		}
		c.ack(ctx, m)
	}
}

// handleOne runs the handler of one claimed message of a batch in its
// span and records its duration.
func (c *Consumer) handleOne(ctx context.Context, m *Message) (herr error) {
	if c.spans != nil {
		var span trace.Span
		ctx, span = c.spans.Start(ctx, m.Subject, m.Header, len(m.Data))
		defer func() { tracingnats.End(span, herr) }()
	}
	start := time.Since(c.epoch)
	herr = c.call(ctx, m)
	if c.metrics.latency.Enabled(ctx) {
		c.metrics.latency.Record(ctx, (time.Since(c.epoch) - start).Seconds(), c.metrics.recordOpts...)
	}
	return herr
}
