package messaging

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// ConsumerConfig holds a Consumer's settings: plain data, with yaml and
// json keys, so it can be loaded from a file. It is safe to copy and to
// read concurrently.
type ConsumerConfig struct {
	// Stream to consume from. Required.
	Stream string `yaml:"stream" json:"stream"`
	// Durable names the durable pull consumer. Instances with the same
	// Durable share its messages. Required.
	Durable string `yaml:"durable" json:"durable"`
	// Subjects filters the stream's subjects; empty means all of them.
	Subjects []string `yaml:"subjects,omitempty" json:"subjects,omitempty"`
	// Workers is the number of handlers running at once. Default 8.
	Workers int `yaml:"workers,omitempty" json:"workers,omitempty"`
	// AckWait is how long the broker waits for an acknowledgement before
	// redelivering. Long handlers are kept alive by in-progress signals.
	// At least 10ms. Default 30s.
	AckWait time.Duration `yaml:"ack_wait,omitempty" json:"ack_wait,omitempty"`
	// MaxDeliver is the number of deliveries after which a message whose
	// handler keeps failing is dead-lettered. Default 5.
	MaxDeliver int `yaml:"max_deliver,omitempty" json:"max_deliver,omitempty"`
	// MaxAckPending bounds the messages delivered and not yet acknowledged,
	// across all instances. Default 1000.
	MaxAckPending int `yaml:"max_ack_pending,omitempty" json:"max_ack_pending,omitempty"`
	// BatchSize is the number of messages each instance buffers ahead of
	// its workers. Default 4 × Workers, at least 64.
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// Backoff is the redelivery delay after the first failed delivery; it
	// doubles with each delivery up to MaxBackoff. Each delay is jittered
	// to between half and all of it, so that messages that failed together
	// (a dependency was down) do not all come back at the same moment.
	// Default 1s.
	Backoff time.Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	// MaxBackoff caps the redelivery delay; it must not be below Backoff.
	// Default 1m, or Backoff if that is larger.
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// InProgressInterval is how often a running handler's message is
	// signalled as in progress (and its idempotency lease extended). Below
	// AckWait. Default AckWait / 3.
	InProgressInterval time.Duration `yaml:"in_progress_interval,omitempty" json:"in_progress_interval,omitempty"`
	// DeadLetterSubject receives copies of messages that are given up.
	// A stream must capture it: a dead letter counts only once stored.
	// Default "deadletter.<Stream>.<Durable>".
	DeadLetterSubject string `yaml:"dead_letter_subject,omitempty" json:"dead_letter_subject,omitempty"`
	// IdempotencyLease is how long a claim on a message's key holds
	// without being extended. Default 2 × AckWait: when a worker is
	// starved past AckWait (its message redelivered elsewhere although it
	// is still running), the redelivery finds the key still claimed and
	// waits for it, instead of taking it over and running the effect a
	// second time. An instance that dies holds its keys for this long.
	IdempotencyLease time.Duration `yaml:"idempotency_lease,omitempty" json:"idempotency_lease,omitempty"`
	// DisableIdempotency runs the handler for every delivery, without a
	// store. Idempotency is on by default.
	DisableIdempotency bool `yaml:"disable_idempotency,omitempty" json:"disable_idempotency,omitempty"`
	// CommitBatch is the most messages a worker settles together with a
	// store that batches: SQLStore runs them in one transaction, with a
	// savepoint per message, and commits once; KVStore sends their claims
	// and their marks without waiting for each. Messages are acknowledged
	// after their batch is committed. 1 settles each message alone. Keep
	// Workers × CommitBatch below MaxAckPending. At most 1000. Default 64
	// (PostgreSQL keeps up to 64 savepoints with changes per transaction
	// without slowing other sessions' snapshots).
	CommitBatch int `yaml:"commit_batch,omitempty" json:"commit_batch,omitempty"`
	// CommitWait is the longest a worker waits for more messages to fill
	// a batch once it has one: a lone message is not held back longer. At
	// most 1s. Default 2ms.
	CommitWait time.Duration `yaml:"commit_wait,omitempty" json:"commit_wait,omitempty"`
}

// Bounds of ConsumerConfig.CommitBatch and CommitWait.
const (
	maxCommitBatch = 1000
	maxCommitWait  = time.Second
)

func (c *ConsumerConfig) setDefaults() error {
	switch {
	case c.Stream == "":
		return invalid("ConsumerConfig.Stream", nil, "is required")
	case c.Durable == "":
		return invalid("ConsumerConfig.Durable", nil, "is required")
	case c.AckWait > 0 && c.AckWait < 10*time.Millisecond:
		return invalid("ConsumerConfig.AckWait", c.AckWait, "must be at least 10ms")
	}
	if err := cmp.Or(
		notNegative("ConsumerConfig.Workers", c.Workers),
		notNegative("ConsumerConfig.AckWait", c.AckWait),
		notNegative("ConsumerConfig.MaxDeliver", c.MaxDeliver),
		notNegative("ConsumerConfig.MaxAckPending", c.MaxAckPending),
		notNegative("ConsumerConfig.BatchSize", c.BatchSize),
		notNegative("ConsumerConfig.InProgressInterval", c.InProgressInterval),
		notNegative("ConsumerConfig.IdempotencyLease", c.IdempotencyLease),
		notNegative("ConsumerConfig.CommitBatch", c.CommitBatch),
		notNegative("ConsumerConfig.CommitWait", c.CommitWait),
	); err != nil {
		return err
	}
	if c.CommitBatch > maxCommitBatch {
		return invalid("ConsumerConfig.CommitBatch", c.CommitBatch, "must be at most 1000")
	}
	if c.CommitWait > maxCommitWait {
		return invalid("ConsumerConfig.CommitWait", c.CommitWait, "must be at most 1s")
	}
	if err := setBackoff("ConsumerConfig", &c.Backoff, &c.MaxBackoff, time.Second, time.Minute); err != nil {
		return err
	}
	c.Workers = cmp.Or(c.Workers, 8)
	c.AckWait = cmp.Or(c.AckWait, 30*time.Second)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, 5)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1000)
	c.BatchSize = cmp.Or(c.BatchSize, max(4*c.Workers, 64))
	c.InProgressInterval = cmp.Or(c.InProgressInterval, c.AckWait/3)
	if c.InProgressInterval >= c.AckWait {
		return invalid("ConsumerConfig.InProgressInterval", c.InProgressInterval, fmt.Sprintf("must be below AckWait (%v)", c.AckWait))
	}
	c.DeadLetterSubject = cmp.Or(c.DeadLetterSubject, "deadletter."+c.Stream+"."+c.Durable)
	c.IdempotencyLease = cmp.Or(c.IdempotencyLease, 2*c.AckWait)
	c.CommitBatch = cmp.Or(c.CommitBatch, 64)
	c.CommitWait = cmp.Or(c.CommitWait, 2*time.Millisecond)
	return nil
}

// Consumer runs a Handler over a durable JetStream pull consumer with
// several workers, idempotency, retries with backoff and dead letters. Run
// it once; it is safe for concurrent use (Stop may be called from any
// goroutine).
type Consumer struct {
	js      jetstream.JetStream
	cons    jetstream.Consumer
	cfg     ConsumerConfig
	o       consumerOptions
	handler Handler
	store   Store
	backoff backoff.Backoff
	metrics *consumerMetrics
	spans   *tracingnats.ProcessSpans // nil: WithoutTracing
	epoch   time.Time                 // handler start times are offsets from it

	running  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Stop or Run's ctx: stop fetching
	stopped  chan struct{} // closed when Run has returned
	hardStop context.CancelFunc
	mu       sync.Mutex
}

// NewConsumer creates or updates the durable consumer described by cfg and
// returns a Consumer that runs handler on its messages. Options:
// WithStore, WithKeyFunc, WithCodec, WithTracing, WithoutTracing,
// WithLogger, WithMeterProvider. Without WithStore, a MemoryStore with
// default settings is used unless cfg.DisableIdempotency. Invalid
// settings return a *FieldError.
func NewConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig, handler Handler, opts ...ConsumerOption) (*Consumer, error) {
	if js == nil {
		return nil, invalid("js", nil, "is nil")
	}
	if handler == nil {
		return nil, invalid("handler", nil, "is nil")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var o consumerOptions
	tr, err := build(&o, &o.options, opts, ConsumerOption.applyConsumer)
	if err != nil {
		return nil, err
	}
	c := &Consumer{js: js, cfg: cfg, o: o, handler: handler,
		stop: make(chan struct{}), stopped: make(chan struct{}),
		backoff: backoff.Backoff{Initial: cfg.Backoff, Max: cfg.MaxBackoff},
		epoch:   time.Now()}
	if tr != nil {
		c.spans = tr.ProcessSpans(semconv.MessagingConsumerGroupName(cfg.Durable))
	}
	if !cfg.DisableIdempotency {
		c.store = o.store
		if c.store == nil {
			c.store, _ = NewMemoryStore(MemoryStoreConfig{})
		}
	}
	if c.metrics, err = newConsumerMetrics(o.meter, cfg.Stream, cfg.Durable); err != nil {
		return nil, err
	}
	jcfg := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1, // the consumer counts deliveries and dead-letters itself
		MaxAckPending: cfg.MaxAckPending,
	}
	if len(cfg.Subjects) == 1 {
		jcfg.FilterSubject = cfg.Subjects[0]
	} else {
		jcfg.FilterSubjects = cfg.Subjects
	}
	if err = jsAPI(ctx, func(ctx context.Context) (err error) {
		c.cons, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, jcfg)
		return err
	}); err != nil {
		return nil, fmt.Errorf("messaging: create consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	return c, nil
}

// Run consumes messages until ctx is done or Stop is called, then stops
// gracefully: it stops fetching, lets in-flight handlers finish and
// returns nil. Messages buffered but not handled are given back to the
// broker. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Consumer.Run called twice", ErrClosed)
	}
	defer close(c.stopped)
	hctx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	c.mu.Lock()
	c.hardStop = hardStop
	c.mu.Unlock()

	work := make(chan jetstream.Msg, c.cfg.Workers)
	cc, err := c.cons.Consume(func(m jetstream.Msg) {
		select {
		case work <- m:
		case <-c.stop:
			_ = m.Nak() // give it back at once; it was not handled
		}
	}, jetstream.PullMaxMessages(c.cfg.BatchSize), jetstream.PullHeartbeat(pullHeartbeat), jetstream.ConsumeErrHandler(c.consumeError))
	if err != nil {
		return fmt.Errorf("messaging: consume %s: %w", c.cfg.Durable, err)
	}

	slots := make([]workerSlot, c.cfg.Workers)
	bs, batching := c.store.(batchStore)
	batching = batching && c.cfg.CommitBatch > 1
	var wg sync.WaitGroup
	for i := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if batching {
				c.batchWorker(hctx, work, bs, &slots[i])
				return
			}
			for {
				select {
				case m := <-work:
					c.handle(hctx, m, &slots[i].cur)
				case <-c.stop:
					return
				}
			}
		}()
	}
	hbDone, workersDone := make(chan struct{}), make(chan struct{})
	go c.heartbeat(hctx, slots, workersDone, hbDone)

	select {
	case <-ctx.Done():
		c.closeStop()
	case <-c.stop:
	}
	cc.Stop()
	wg.Wait()
	close(workersDone)
	<-hbDone
	<-cc.Closed()
	for { // give back what the workers did not take
		select {
		case m := <-work:
			_ = m.Nak()
		default:
			return nil
		}
	}
}

// pullHeartbeat is the idle heartbeat of the consumer's pull requests.
// nats.go v1.55.0's Consume can stop pulling: when every message of the
// outstanding pull requests arrives while its pull goroutine is still
// sending the previous request (fetchInProgress), the next pull is skipped
// and only the missed-heartbeat timer, two heartbeats later, pulls again.
// By default that is 2 × 15s, the 30s stall; with 1s it is 2s.
const pullHeartbeat = time.Second

func (c *Consumer) closeStop() { c.stopOnce.Do(func() { close(c.stop) }) }

// Stop stops fetching and waits for in-flight handlers to finish and Run to
// return. If ctx ends first, the handlers' contexts are cancelled, Stop
// still waits for Run to return and then returns ctx's error. Stop before
// Run prevents Run from consuming.
func (c *Consumer) Stop(ctx context.Context) error {
	c.closeStop()
	if !c.running.Load() {
		return nil
	}
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.hardStop != nil {
		c.hardStop()
	}
	c.mu.Unlock()
	<-c.stopped
	return ctx.Err()
}

func (c *Consumer) consumeError(_ jetstream.ConsumeContext, err error) {
	if c.o.logger != nil {
		c.o.logger.Warn("messaging: consume", "stream", c.cfg.Stream, "durable", c.cfg.Durable, "error", err)
	}
}

// heartbeat signals progress for handlers running longer than the
// in-progress interval and extends their leases, until workersDone.
func (c *Consumer) heartbeat(ctx context.Context, slots []workerSlot, workersDone <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.cfg.InProgressInterval)
	defer t.Stop()
	var held []*Message
	for {
		select {
		case <-workersDone:
			return
		case <-t.C:
		}
		now := time.Since(c.epoch)
		held = held[:0]
		for i := range slots {
			if f := slots[i].cur.Load(); f != nil {
				c.keepAlive(ctx, now, f)
			}
			held = slots[i].held(held)
		}
		c.keepAliveAll(ctx, now, held)
		clear(held)
	}
}

// keepAlive signals progress for a message held longer than the
// in-progress interval and extends its lease.
func (c *Consumer) keepAlive(ctx context.Context, now time.Duration, f *Message) {
	if now-f.started < c.cfg.InProgressInterval {
		return
	}
	_ = f.msg.InProgress()
	if f.claim != nil {
		if err := f.claim.Extend(ctx, c.cfg.IdempotencyLease); err != nil && c.o.logger != nil {
			c.o.logger.Warn("messaging: extend idempotency lease", "durable", c.cfg.Durable, "error", err)
		}
	}
}

// keepAliveAll does what keepAlive does for the messages of batches,
// extending leases that can be extended asynchronously all at once.
func (c *Consumer) keepAliveAll(ctx context.Context, now time.Duration, msgs []*Message) {
	var waits []func(context.Context) error
	for _, f := range msgs {
		if now-f.started < c.cfg.InProgressInterval {
			continue
		}
		_ = f.msg.InProgress()
		switch cl := f.claim.(type) {
		case nil:
		case asyncExtender:
			if w := cl.extendAsync(c.cfg.IdempotencyLease); w != nil {
				waits = append(waits, w)
			}
		default:
			if err := cl.Extend(ctx, c.cfg.IdempotencyLease); err != nil && c.o.logger != nil {
				c.o.logger.Warn("messaging: extend idempotency lease", "durable", c.cfg.Durable, "error", err)
			}
		}
	}
	for _, w := range waits {
		if err := w(ctx); err != nil && c.o.logger != nil {
			c.o.logger.Warn("messaging: extend idempotency lease", "durable", c.cfg.Durable, "error", err)
		}
	}
}

func (c *Consumer) key(m *Message) string {
	if c.o.keyFunc != nil {
		if k := c.o.keyFunc(m); k != "" {
			return k
		}
	}
	if m.ID != "" {
		return m.ID
	}
	return m.Stream + ":" + strconv.FormatUint(m.Sequence, 10)
}

// message builds the Message of a delivery.
func (c *Consumer) message(jm jetstream.Msg) *Message {
	h := jm.Headers()
	m := &Message{Subject: jm.Subject(), Header: h, Data: jm.Data(), msg: jm, codec: c.o.codec,
		Stream: c.cfg.Stream}
	if h != nil {
		m.ID = headerGet(h, HeaderMsgID)
		m.Caller = headerGet(h, HeaderCaller)
	} else {
		m.Header = nats.Header{}
	}
	if md, ok := parseAckSubject(jm.Reply()); ok {
		m.Stream, m.Sequence, m.NumDelivered, m.Published = md.stream, md.sequence, md.delivered, time.Unix(0, md.timestamp)
	} else if md, err := jm.Metadata(); err == nil {
		m.Stream, m.Sequence, m.NumDelivered, m.Published = md.Stream, md.Sequence.Stream, md.NumDelivered, md.Timestamp
	} else {
		m.NumDelivered = 1
	}
	m.Key = c.key(m)
	return m
}

func (c *Consumer) handle(ctx context.Context, jm jetstream.Msg, slot *atomic.Pointer[Message]) {
	m := c.message(jm)
	var herr error // the handler's, recorded on the span
	if c.spans != nil {
		var span trace.Span
		ctx, span = c.spans.Start(ctx, m.Subject, m.Header, len(m.Data))
		defer func() { tracingnats.End(span, herr) }()
	}

	var claim Claim
	if c.store != nil {
		var err error
		claim, err = c.store.Claim(ctx, m.Key, c.cfg.IdempotencyLease)
		switch {
		case err == nil:
		case errors.Is(err, ErrDuplicate):
			c.metrics.duplicates.Add(ctx, 1, c.metrics.addOpts...)
			c.ack(ctx, m)
			return
		default:
			c.claimFailed(ctx, m, err)
			return
		}
		if tc, ok := claim.(TxClaim); ok {
			m.tx = tc.Tx()
		}
	}

	m.claim, m.started = claim, time.Since(c.epoch)
	slot.Store(m)
	herr = c.call(ctx, m)
	slot.Store(nil)
	if c.metrics.latency.Enabled(ctx) {
		c.metrics.latency.Record(ctx, (time.Since(c.epoch) - m.started).Seconds(), c.metrics.recordOpts...)
	}

	if herr == nil {
		if claim != nil {
			if err := claim.Done(ctx); err != nil {
				if _, tx := claim.(TxClaim); tx {
					// The commit failed: the business change is gone too.
					c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), fmt.Errorf("commit: %w", err))
					return
				}
				// The work is done; acknowledging is safer than redoing it.
				c.log(ctx, slog.LevelWarn, "messaging: mark message done", m, err)
			}
		}
		c.metrics.processed.Add(ctx, 1, c.metrics.addOpts...)
		if c.o.beforeAck != nil && !c.o.beforeAck(m) {
			return
		}
		c.ack(ctx, m)
		return
	}

	if claim != nil {
		if err := claim.Release(ctx); err != nil {
			c.log(ctx, slog.LevelWarn, "messaging: release idempotency key", m, err)
		}
	}
	c.failed(ctx, m, herr)
}

// claimFailed redelivers a message whose key could not be claimed: when
// the lease of the delivery holding it ends, or after a backoff.
func (c *Consumer) claimFailed(ctx context.Context, m *Message, err error) {
	if errors.Is(err, ErrClaimed) {
		delay := c.backoff.Delay(int(m.NumDelivered))
		var ce *ClaimedError
		if errors.As(err, &ce) && !ce.Until.IsZero() {
			delay = min(max(time.Until(ce.Until), 10*time.Millisecond), c.cfg.MaxBackoff)
		}
		c.retry(ctx, m, delay, err)
		return
	}
	c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), fmt.Errorf("claim idempotency key: %w", err))
}

// failed redelivers or dead-letters a message whose handler failed.
func (c *Consumer) failed(ctx context.Context, m *Message, herr error) {
	reason := ""
	switch {
	case errors.Is(herr, ErrUndecodable):
		reason = ReasonUndecodable
	case resilience.IsPermanent(herr):
		reason = ReasonPermanent
	case m.NumDelivered >= uint64(c.cfg.MaxDeliver):
		reason = ReasonMaxDeliver
	}
	if reason == "" {
		c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), herr)
		return
	}
	c.deadLetter(ctx, m, reason, herr)
}

// call runs the handler, turning a panic into an error.
func (c *Consumer) call(ctx context.Context, m *Message) (err error) {
	c.metrics.inFlight.Add(ctx, 1, c.metrics.addOpts...)
	defer func() {
		c.metrics.inFlight.Add(ctx, -1, c.metrics.addOpts...)
		if r := recover(); r != nil {
			err = fmt.Errorf("messaging: handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return c.handler(ctx, m)
}

func (c *Consumer) ack(ctx context.Context, m *Message) {
	if err := m.msg.Ack(); err != nil {
		c.log(ctx, slog.LevelWarn, "messaging: ack (the message will be redelivered and recognised)", m, err)
	}
}

func (c *Consumer) retry(ctx context.Context, m *Message, delay time.Duration, cause error) {
	c.metrics.retries.Add(ctx, 1, c.metrics.addOpts...)
	c.log(ctx, slog.LevelDebug, "messaging: redelivering after "+delay.String(), m, cause)
	if err := m.msg.NakWithDelay(delay); err != nil {
		c.log(ctx, slog.LevelWarn, "messaging: nak (the message will be redelivered after AckWait)", m, err)
	}
}

// deadLetter copies the message to the dead-letter subject and terminates
// it. If the copy cannot be stored, the message is redelivered instead, so
// that nothing is lost.
func (c *Consumer) deadLetter(ctx context.Context, m *Message, reason string, cause error) {
	dl := &nats.Msg{Subject: c.cfg.DeadLetterSubject, Data: m.Data, Header: make(nats.Header, len(m.Header)+8)}
	for k, v := range m.Header {
		dl.Header[k] = append([]string(nil), v...)
	}
	// One dead letter per stream message, even if this runs twice. Each
	// header replaces the original's in any letter case.
	headerSet(dl.Header, HeaderMsgID, "dl:"+m.Stream+":"+strconv.FormatUint(m.Sequence, 10))
	if m.ID != "" {
		headerSet(dl.Header, HeaderOriginMsgID, m.ID)
	}
	headerSet(dl.Header, HeaderDeadLetterReason, reason)
	headerSet(dl.Header, HeaderDeadLetterError, cause.Error())
	headerSet(dl.Header, HeaderOriginSubject, m.Subject)
	headerSet(dl.Header, HeaderOriginStream, m.Stream)
	headerSet(dl.Header, HeaderOriginSequence, strconv.FormatUint(m.Sequence, 10))
	headerSet(dl.Header, HeaderOriginConsumer, c.cfg.Durable)
	headerSet(dl.Header, HeaderDeliveries, strconv.FormatUint(m.NumDelivered, 10))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := c.js.PublishMsg(pctx, dl)
	cancel()
	if err != nil {
		c.retry(ctx, m, c.backoff.Delay(int(m.NumDelivered)), fmt.Errorf("publish dead letter to %s: %w (handler error: %v)", c.cfg.DeadLetterSubject, err, cause))
		return
	}
	c.metrics.deadLetters.Add(ctx, 1, c.metrics.addOpts...)
	c.log(ctx, slog.LevelWarn, "messaging: dead-lettered ("+reason+")", m, cause)
	if err := m.msg.TermWithReason(reason); err != nil {
		c.log(ctx, slog.LevelWarn, "messaging: term", m, err)
	}
}

func (c *Consumer) log(ctx context.Context, level slog.Level, msg string, m *Message, err error) {
	if c.o.logger == nil || !c.o.logger.Enabled(ctx, level) {
		return
	}
	c.o.logger.Log(ctx, level, msg, "stream", m.Stream, "sequence", m.Sequence, "subject", m.Subject,
		"msg_id", m.ID, "deliveries", m.NumDelivered, "durable", c.cfg.Durable, "error", err)
}

// ackMetadata is what the consumer reads from a JetStream ack subject.
type ackMetadata struct {
	stream              string
	delivered, sequence uint64
	timestamp           int64 // Unix nanoseconds
}

// parseAckSubject reads the delivery metadata from a message's ack subject
// without allocating, as jetstream.Msg.Metadata does with one allocation:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>...]
//
// It reports false for anything else; the caller then falls back to
// Metadata.
func parseAckSubject(subject string) (md ackMetadata, ok bool) {
	rest, ok := strings.CutPrefix(subject, "$JS.ACK.")
	if !ok {
		return md, false
	}
	switch n := strings.Count(rest, ".") + 1; {
	case n == 7: // v1
	case n >= 9: // v2: skip the domain and the account hash
		_, rest, _ = strings.Cut(rest, ".")
		_, rest, _ = strings.Cut(rest, ".")
	default:
		return md, false
	}
	var tok [6]string // stream, consumer, delivered, sseq, cseq, tm
	for i := range tok {
		tok[i], rest, _ = strings.Cut(rest, ".")
	}
	var err1, err2, err3 error
	md.stream = tok[0]
	md.delivered, err1 = strconv.ParseUint(tok[2], 10, 64)
	md.sequence, err2 = strconv.ParseUint(tok[3], 10, 64)
	md.timestamp, err3 = strconv.ParseInt(tok[5], 10, 64)
	return md, md.stream != "" && err1 == nil && err2 == nil && err3 == nil
}
