package messaging

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// PublisherConfig holds a Publisher's settings: plain data, with yaml and
// json keys, so it can be loaded from a file. The zero value is valid. It
// is safe to copy and to read concurrently.
type PublisherConfig struct {
	// Timeout bounds one publish attempt (sending the message and waiting
	// for the stream's acknowledgement). While no stream answers at all
	// (no responders: the stream is electing a leader, or its server is
	// restarting), the attempt asks again every 250ms until Timeout, so a
	// publish rides through an election of up to MaxAttempts × Timeout.
	// Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// MaxAttempts is the number of attempts for a transient failure (no
	// response, timeout, reconnecting). Default 5.
	MaxAttempts int `yaml:"max_attempts,omitempty" json:"max_attempts,omitempty"`
	// Backoff is the wait after the first failed attempt; it doubles with
	// each attempt up to MaxBackoff, and each wait is jittered to between
	// half and all of it, so publishers that failed together do not retry
	// in step. Default 50ms.
	Backoff time.Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	// MaxBackoff caps the wait between attempts; it must not be below
	// Backoff. Default 2s, or Backoff if that is larger.
	MaxBackoff time.Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// MaxPending bounds asynchronous publishes awaiting their
	// acknowledgement; PublishAsync blocks while it is reached. Default 256.
	MaxPending int `yaml:"max_pending,omitempty" json:"max_pending,omitempty"`
}

func (c *PublisherConfig) setDefaults() error {
	if err := cmp.Or(
		notNegative("PublisherConfig.Timeout", c.Timeout),
		notNegative("PublisherConfig.MaxAttempts", c.MaxAttempts),
		notNegative("PublisherConfig.MaxPending", c.MaxPending),
	); err != nil {
		return err
	}
	if err := setBackoff("PublisherConfig", &c.Backoff, &c.MaxBackoff, 50*time.Millisecond, 2*time.Second); err != nil {
		return err
	}
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 5)
	c.MaxPending = cmp.Or(c.MaxPending, 256)
	return nil
}

// Publisher publishes typed payloads to JetStream. Every message carries a
// Nats-Msg-Id (given with WithMsgID or generated), its content type, the
// caller and the trace context. Transient failures are retried with the
// same message ID, so the broker stores the message once. It is safe for
// concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	cfg     PublisherConfig
	o       publisherOptions
	backoff backoff.Backoff
	// askAgain makes an attempt ask again every noStreamWait while no
	// stream answers, for about the attempt's Timeout.
	askAgain []jetstream.PublishOpt
	tracer   *tracingnats.Tracer // nil: WithoutTracing
	failed   metric.Int64Counter
	sent     metric.Int64Counter

	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	// closing is done when Close gives up waiting for pending publishes:
	// a lifetime signal for their retries, not a request's context.
	closing context.Context
	giveUp  context.CancelFunc
	closed  bool
}

// NewPublisher returns a Publisher over js. Options: WithCaller,
// WithCodec, WithTracing, WithoutTracing, WithLogger, WithMeterProvider.
// Invalid settings return a *FieldError.
func NewPublisher(js jetstream.JetStream, cfg PublisherConfig, opts ...PublisherOption) (*Publisher, error) {
	if js == nil {
		return nil, invalid("js", nil, "is nil")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var o publisherOptions
	tr, err := build(&o, &o.options, opts, PublisherOption.applyPublisher)
	if err != nil {
		return nil, err
	}
	m := o.meter.Meter(instrumentation)
	sent, err := m.Int64Counter("vitamin.messaging.published", metric.WithDescription("Messages acknowledged by the stream."))
	if err != nil {
		return nil, err
	}
	failed, err := m.Int64Counter("vitamin.messaging.publish_failed", metric.WithDescription("Publishes that failed after all attempts."))
	if err != nil {
		return nil, err
	}
	closing, giveUp := context.WithCancel(context.Background())
	return &Publisher{
		js: js, cfg: cfg, o: o,
		backoff: backoff.Backoff{Initial: cfg.Backoff, Max: cfg.MaxBackoff},
		askAgain: []jetstream.PublishOpt{
			jetstream.WithRetryAttempts(int(cfg.Timeout / noStreamWait)), jetstream.WithRetryWait(noStreamWait),
		},
		tracer: tr,
		sent:   sent, failed: failed,
		slots:   make(chan struct{}, cfg.MaxPending),
		closing: closing, giveUp: giveUp,
	}, nil
}

// PublishOption sets something on one message.
type PublishOption func(*nats.Msg)

// WithMsgID sets the message ID (the Nats-Msg-Id header) instead of a
// generated one. Publishing twice with one ID inside the stream's
// duplicates window stores the message once.
func WithMsgID(id string) PublishOption {
	return func(m *nats.Msg) { headerSet(m.Header, HeaderMsgID, id) }
}

// WithHeader sets a header on the message, replacing its value in any
// letter case (WithHeader("content-type", …) replaces the codec's
// Content-Type).
func WithHeader(key, value string) PublishOption {
	return func(m *nats.Msg) { headerSet(m.Header, key, value) }
}

// Publish encodes v, publishes it to subject and waits for the stream's
// acknowledgement, retrying transient failures. A PubAck with Duplicate
// set means the broker had the message already. The publish runs in a
// producer span ("publish <subject>", see tracingnats.Tracer.StartPublish)
// whose context travels in the message headers.
func (p *Publisher) Publish(ctx context.Context, subject string, v any, opts ...PublishOption) (*jetstream.PubAck, error) {
	if p.isClosed() {
		return nil, ErrClosed
	}
	msg, err := p.message(subject, v, opts)
	if err != nil {
		return nil, err
	}
	if p.tracer == nil {
		return p.publish(ctx, msg)
	}
	ctx, span := p.tracer.StartPublish(ctx, msg)
	ack, err := p.publish(ctx, msg)
	tracingnats.End(span, err)
	return ack, err
}

func (p *Publisher) message(subject string, v any, opts []PublishOption) (*nats.Msg, error) {
	return buildMessage(&p.o, subject, v, opts)
}

func (p *Publisher) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	var last error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		ack, err := p.js.PublishMsg(actx, msg, p.askAgain...)
		cancel()
		if err == nil {
			p.sent.Add(ctx, 1)
			return ack, nil
		}
		last = err
		if ctx.Err() != nil || !transient(err) || attempt >= p.cfg.MaxAttempts {
			break
		}
		p.logRetry(ctx, msg, attempt, err)
		if !backoff.Sleep(ctx, p.backoff.Delay(attempt)) {
			break
		}
	}
	p.failed.Add(ctx, 1)
	return nil, &PublishError{Subject: msg.Subject, MsgID: headerGet(msg.Header, HeaderMsgID), Err: last}
}

// noStreamWait is how long an attempt waits before it asks again when no
// stream answered (no responders).
const noStreamWait = 250 * time.Millisecond

func (p *Publisher) logRetry(ctx context.Context, msg *nats.Msg, attempt int, err error) {
	if p.o.logger != nil && p.o.logger.Enabled(ctx, slog.LevelDebug) {
		p.o.logger.DebugContext(ctx, "messaging: publish failed, retrying", "subject", msg.Subject,
			"msg_id", headerGet(msg.Header, HeaderMsgID), "attempt", attempt, "error", err)
	}
}

// errCodeMsgIDInProcess is JetStream's "duplicate message id is in
// process" (409): an earlier attempt with the same Nats-Msg-Id is still
// being replicated, typically across a stream leader change. Asked again,
// the stream answers with a duplicate PubAck once that attempt is stored,
// or stores the message if it was not.
const errCodeMsgIDInProcess jetstream.ErrorCode = 10158

// transient reports whether a publish error may go away by itself.
func transient(err error) bool {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrMaxPayload), errors.Is(err, context.Canceled):
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || // 503: JetStream not (yet) available
			apiErr.ErrorCode == errCodeMsgIDInProcess
	}
	return true // timeouts, no responders while the server restarts, reconnecting
}

// PublishError says which message could not be published. Unwrap returns
// the last attempt's error.
type PublishError struct {
	Subject string
	MsgID   string
	Err     error
}

// Error names the subject, the message ID and the last attempt's error.
func (e *PublishError) Error() string {
	return fmt.Sprintf("messaging: publish %s (msg id %s): %v", e.Subject, e.MsgID, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *PublishError) Unwrap() error { return e.Err }

// PublishFuture is the result of PublishAsync. It is safe for concurrent
// use.
type PublishFuture struct {
	done chan struct{}
	ack  *jetstream.PubAck
	err  error
}

// Done is closed when the publish succeeded or failed for good.
func (f *PublishFuture) Done() <-chan struct{} { return f.done }

// Result waits for the publish to finish, or for ctx, and returns its
// acknowledgement or its error.
func (f *PublishFuture) Result(ctx context.Context) (*jetstream.PubAck, error) {
	select {
	case <-f.done:
		return f.ack, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// PublishAsync encodes v and publishes it without waiting for the
// acknowledgement; the returned future reports it. Transient failures are
// retried in the background with the same message ID. It blocks while
// MaxPending publishes are unacknowledged, until ctx is done. Call Flush or
// Close to wait for every pending publish. The producer span starts here,
// as a child of the span in ctx, and ends when the outcome is known.
func (p *Publisher) PublishAsync(ctx context.Context, subject string, v any, opts ...PublishOption) (*PublishFuture, error) {
	msg, err := p.message(subject, v, opts)
	if err != nil {
		return nil, err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	var span trace.Span
	if p.tracer != nil {
		_, span = p.tracer.StartPublish(ctx, msg)
	}
	f := &PublishFuture{done: make(chan struct{})}
	go p.runAsync(msg, f, span)
	return f, nil
}

func (p *Publisher) runAsync(msg *nats.Msg, f *PublishFuture, span trace.Span) {
	defer p.wg.Done()
	defer func() { <-p.slots }()
	defer close(f.done)
	if span != nil {
		defer func() { tracingnats.End(span, f.err) }()
	}
	ctx := context.Background()
	for attempt := 1; ; attempt++ {
		f.ack, f.err = p.asyncAttempt(msg)
		if f.err == nil {
			p.sent.Add(ctx, 1)
			return
		}
		if !transient(f.err) || attempt >= p.cfg.MaxAttempts {
			break
		}
		p.logRetry(ctx, msg, attempt, f.err)
		// Once Close gave up waiting, the remaining attempts do not wait.
		backoff.Sleep(p.closing, p.backoff.Delay(attempt))
	}
	p.failed.Add(ctx, 1)
	f.err = &PublishError{Subject: msg.Subject, MsgID: headerGet(msg.Header, HeaderMsgID), Err: f.err}
	if p.o.logger != nil {
		p.o.logger.Error("messaging: asynchronous publish failed", "subject", msg.Subject,
			"msg_id", headerGet(msg.Header, HeaderMsgID), "error", f.err)
	}
}

// asyncAttempt is one attempt of an asynchronous publish: like a
// synchronous one, it asks again while no stream answers (askAgain).
func (p *Publisher) asyncAttempt(msg *nats.Msg) (*jetstream.PubAck, error) {
	// Each attempt publishes a copy: jetstream keeps the message it is given.
	cp := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: msg.Header}
	fut, err := p.js.PublishMsgAsync(cp, p.askAgain...)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		return nil, err
	case <-t.C:
		return nil, jetstream.ErrAsyncPublishTimeout
	}
}

// Flush waits until every asynchronous publish started so far has
// succeeded or failed, or until ctx is done.
func (p *Publisher) Flush(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close refuses new publishes and waits, like Flush, for pending ones. If
// ctx ends first, pending publishes stop waiting between retries, and Close
// returns ctx's error; their futures still report the outcome.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
	}
	p.mu.Unlock()
	err := p.Flush(ctx)
	p.giveUp() // if Flush gave up, pending publishes stop waiting between attempts
	p.wg.Wait()
	return err
}

func (p *Publisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
