package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing/tracingnats"
)

// PublisherConfig holds a Publisher's settings. The zero value is valid.
// It is plain data, safe to copy and to read concurrently.
type PublisherConfig struct {
	// Timeout bounds one publish attempt (sending the message and waiting
	// for the stream's acknowledgement). Default 5s.
	Timeout time.Duration
	// MaxAttempts is the number of attempts for a transient failure (no
	// response, timeout, reconnecting). Default 5.
	MaxAttempts int
	// InitialBackoff is the wait after the first failed attempt; it
	// doubles with each attempt up to MaxBackoff. Default 50ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts. Default 2s.
	MaxBackoff time.Duration
	// MaxPending bounds asynchronous publishes awaiting their
	// acknowledgement; PublishAsync blocks while it is reached. Default 256.
	MaxPending int
}

func (c *PublisherConfig) setDefaults() error {
	if c.Timeout < 0 || c.MaxAttempts < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 || c.MaxPending < 0 {
		return invalid("PublisherConfig: Timeout, MaxAttempts, InitialBackoff, MaxBackoff and MaxPending must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.MaxBackoff < c.InitialBackoff {
		return invalid("PublisherConfig.MaxBackoff (%v) must not be below InitialBackoff (%v)", c.MaxBackoff, c.InitialBackoff)
	}
	if c.MaxPending == 0 {
		c.MaxPending = 256
	}
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
	o       options
	backoff func(int) time.Duration
	tracer  trace.Tracer
	failed  metric.Int64Counter
	sent    metric.Int64Counter

	slots   chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
	closing chan struct{}
}

// NewPublisher returns a Publisher over js. Options: WithCaller,
// WithCodec, WithPropagator, WithLogger, WithMeterProvider,
// WithTracerProvider.
func NewPublisher(js jetstream.JetStream, cfg PublisherConfig, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, invalid("NewPublisher: js is nil")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	if o.codec == nil {
		return nil, invalid("WithCodec: codec is nil")
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
	return &Publisher{
		js: js, cfg: cfg, o: o,
		backoff: expBackoff(cfg.InitialBackoff, cfg.MaxBackoff),
		tracer:  o.tracer.Tracer(instrumentation),
		sent:    sent, failed: failed,
		slots:   make(chan struct{}, cfg.MaxPending),
		closing: make(chan struct{}),
	}, nil
}

// PublishOption sets something on one message.
type PublishOption func(*nats.Msg)

// WithMsgID sets the message ID (the Nats-Msg-Id header) instead of a
// generated one. Publishing twice with one ID inside the stream's
// duplicates window stores the message once.
func WithMsgID(id string) PublishOption {
	return func(m *nats.Msg) { m.Header.Set(HeaderMsgID, id) }
}

// WithHeader sets a header on the message.
func WithHeader(key, value string) PublishOption {
	return func(m *nats.Msg) { m.Header.Set(key, value) }
}

// Publish encodes v, publishes it to subject and waits for the stream's
// acknowledgement, retrying transient failures. A PubAck with Duplicate
// set means the broker had the message already.
func (p *Publisher) Publish(ctx context.Context, subject string, v any, opts ...PublishOption) (*jetstream.PubAck, error) {
	if p.isClosed() {
		return nil, ErrClosed
	}
	msg, err := p.message(subject, v, opts)
	if err != nil {
		return nil, err
	}
	ctx, span := p.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject)))
	defer span.End()
	p.o.propagator.Inject(ctx, tracingnats.HeaderCarrier(msg.Header))
	ack, err := p.publish(ctx, msg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return ack, err
}

func (p *Publisher) message(subject string, v any, opts []PublishOption) (*nats.Msg, error) {
	if subject == "" {
		return nil, invalid("Publish: subject is empty")
	}
	data, ct, err := p.o.codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("messaging: encode %T for %s: %w", v, subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 4)}
	msg.Header.Set(HeaderContentType, ct)
	if p.o.caller != "" {
		msg.Header.Set(HeaderCaller, p.o.caller)
	}
	for _, opt := range opts {
		opt(msg)
	}
	if msg.Header.Get(HeaderMsgID) == "" {
		msg.Header.Set(HeaderMsgID, nuid.Next())
	}
	return msg, nil
}

func (p *Publisher) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	var last error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		ack, err := p.js.PublishMsg(actx, msg)
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
		if !p.wait(ctx, p.backoff(attempt)) {
			break
		}
	}
	p.failed.Add(ctx, 1)
	return nil, &PublishError{Subject: msg.Subject, MsgID: msg.Header.Get(HeaderMsgID), Err: last}
}

func (p *Publisher) logRetry(ctx context.Context, msg *nats.Msg, attempt int, err error) {
	if p.o.logger != nil && p.o.logger.Enabled(ctx, slog.LevelDebug) {
		p.o.logger.DebugContext(ctx, "messaging: publish failed, retrying", "subject", msg.Subject,
			"msg_id", msg.Header.Get(HeaderMsgID), "attempt", attempt, "error", err)
	}
}

func (p *Publisher) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// transient reports whether a publish error may go away by itself.
func transient(err error) bool {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrMaxPayload), errors.Is(err, context.Canceled):
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 // 503: JetStream not (yet) available
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
// Close to wait for every pending publish.
func (p *Publisher) PublishAsync(ctx context.Context, subject string, v any, opts ...PublishOption) (*PublishFuture, error) {
	msg, err := p.message(subject, v, opts)
	if err != nil {
		return nil, err
	}
	p.o.propagator.Inject(ctx, tracingnats.HeaderCarrier(msg.Header))
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
	f := &PublishFuture{done: make(chan struct{})}
	go p.runAsync(msg, f)
	return f, nil
}

func (p *Publisher) runAsync(msg *nats.Msg, f *PublishFuture) {
	defer p.wg.Done()
	defer func() { <-p.slots }()
	defer close(f.done)
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
		select {
		case <-time.After(p.backoff(attempt)):
		case <-p.closing:
			// Close gave up waiting: try once more without waiting.
		}
	}
	p.failed.Add(ctx, 1)
	f.err = &PublishError{Subject: msg.Subject, MsgID: msg.Header.Get(HeaderMsgID), Err: f.err}
	if p.o.logger != nil {
		p.o.logger.Error("messaging: asynchronous publish failed", "subject", msg.Subject,
			"msg_id", msg.Header.Get(HeaderMsgID), "error", f.err)
	}
}

func (p *Publisher) asyncAttempt(msg *nats.Msg) (*jetstream.PubAck, error) {
	// Each attempt publishes a copy: jetstream keeps the message it is given.
	cp := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: msg.Header}
	fut, err := p.js.PublishMsgAsync(cp)
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
	if err != nil {
		p.mu.Lock()
		select {
		case <-p.closing:
		default:
			close(p.closing)
		}
		p.mu.Unlock()
		p.wg.Wait()
	}
	return err
}

func (p *Publisher) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
