package tracingnats

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/internal/telemetry"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/vitamin-go/vitamin/tracing/tracingnats"

// Semantic-convention values for NATS messaging spans.
const (
	// System is the messaging.system attribute value.
	System = "nats"
	// OperationPublish is the messaging.operation.name of producer spans.
	OperationPublish = "publish"
	// OperationProcess is the messaging.operation.name of consumer spans.
	OperationProcess = "process"
)

// Option configures a Tracer.
type Option func(*Tracer)

// Telemetry gives the OpenTelemetry providers a Tracer reports to; it is
// the one telemetry seam of Vitamin's tracing adapters (tracinggrpc and
// tracinghttp take the same), and *tracing.Telemetry implements it. Taking
// an interface keeps this package, and so messaging, free of the
// OpenTelemetry SDK and exporters that package tracing brings in.
type Telemetry = telemetry.Telemetry

// WithTelemetry takes the tracer provider and propagator from t, usually
// the *tracing.Telemetry that tracing.New returned.
func WithTelemetry(t Telemetry) Option {
	return func(tr *Tracer) {
		tr.tp = t.TracerProvider()
		tr.prop = t.Propagator()
	}
}

// WithTracerProvider sets the tracer provider. Default: the global one
// (otel.GetTracerProvider) at the time New is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(tr *Tracer) { tr.tp = tp }
}

// WithPropagator sets the propagator. Default: the global one
// (otel.GetTextMapPropagator) at the time New is called.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(tr *Tracer) { tr.prop = p }
}

// Tracer starts producer and consumer spans for NATS messages, following
// the OpenTelemetry messaging semantic conventions, and carries the trace
// context and baggage in the message headers. It is safe for concurrent
// use.
type Tracer struct {
	tp     trace.TracerProvider
	prop   propagation.TextMapPropagator
	tracer trace.Tracer
}

// New returns a Tracer. Without options it uses the OpenTelemetry globals,
// as installed by tracing.Setup; if Setup has not run they are no-ops that
// still carry an incoming trace context through.
func New(opts ...Option) *Tracer {
	t := &Tracer{}
	for _, o := range opts {
		o(t)
	}
	if t.tp == nil {
		t.tp = otel.GetTracerProvider()
	}
	if t.prop == nil {
		t.prop = otel.GetTextMapPropagator()
	}
	t.tracer = t.tp.Tracer(ScopeName)
	return t
}

// Propagator returns the propagator the Tracer writes and reads headers
// with.
func (t *Tracer) Propagator() propagation.TextMapPropagator { return t.prop }

// StartPublish starts a producer span named "publish <subject>" as a child
// of the span in ctx, and writes its context and the baggage of ctx into
// msg's headers (creating them if needed). Publish msg with the returned
// context, then end the span with End. The attributes given are added to
// the span, after the standard ones: messaging.system,
// messaging.operation.name and .type, messaging.destination.name,
// messaging.message.body.size and, when the Nats-Msg-Id header is set,
// messaging.message.id.
func (t *Tracer) StartPublish(ctx context.Context, msg *nats.Msg, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	all := spanAttrs(OperationPublish, semconv.MessagingOperationTypeSend, msg.Subject, 2+len(attrs))
	all = append(appendMessage(all, msg.Header, len(msg.Data)), attrs...)
	ctx, span := t.tracer.Start(ctx, OperationPublish+" "+msg.Subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(all...))
	t.prop.Inject(ctx, HeaderCarrier(msg.Header))
	return ctx, span
}

// spanAttrs returns the attributes the semantic conventions ask for at
// span creation, with room for extra more.
func spanAttrs(operation string, opType attribute.KeyValue, subject string, extra int) []attribute.KeyValue {
	return append(make([]attribute.KeyValue, 0, 4+extra),
		semconv.MessagingSystemKey.String(System),
		semconv.MessagingOperationName(operation),
		opType,
		semconv.MessagingDestinationName(subject),
	)
}

// appendMessage appends the attributes of one message: its body size and,
// when the Nats-Msg-Id header is set, its ID.
func appendMessage(attrs []attribute.KeyValue, h nats.Header, bodySize int) []attribute.KeyValue {
	attrs = append(attrs, semconv.MessagingMessageBodySize(bodySize))
	if id := HeaderCarrier(h).Get(nats.MsgIdHdr); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	return attrs
}

// StartProcess reads the trace context and baggage from the headers of a
// received message and starts a consumer span named "process <subject>"
// as its child, so the handler's work joins the producer's trace. When the
// message carries no trace context, the span is a child of the span in ctx
// (or a new root). Run the handler with the returned context, then end
// the span with End. bodySize is the payload length in bytes. The span has
// messaging.system, messaging.operation.name and .type,
// messaging.destination.name, messaging.message.body.size and, when the
// Nats-Msg-Id header is set, messaging.message.id, then attrs.
//
// It takes the subject and headers rather than a *nats.Msg so that
// JetStream messages (jetstream.Msg) fit too. Add
// semconv.MessagingConsumerGroupName (queue group or durable consumer)
// through attrs. For many messages of one subscription, ProcessSpans
// starts the same spans for less.
func (t *Tracer) StartProcess(ctx context.Context, subject string, h nats.Header, bodySize int, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx = Extract(ctx, t.prop, h)
	all := spanAttrs(OperationProcess, semconv.MessagingOperationTypeProcess, subject, 2+len(attrs))
	all = append(appendMessage(all, h, bodySize), attrs...)
	return t.tracer.Start(ctx, OperationProcess+" "+subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(all...))
}

// ProcessSpans starts the consumer spans of one subscription, such as a
// JetStream durable consumer, whose own attributes are the same for every
// message. It builds the span name and start options of each subject once
// (for up to 256 subjects), so that a span costs what the tracer's Start
// costs: nothing is allocated for a span that is not recorded. It is safe
// for concurrent use.
type ProcessSpans struct {
	t     *Tracer
	attrs []attribute.KeyValue
	mu    sync.Mutex                         // serialises additions to subjects
	known atomic.Pointer[map[string]process] // copied on write: read without a lock
}

type process struct {
	name string
	opts []trace.SpanStartOption
}

// maxProcessSubjects bounds the subjects whose span options a
// ProcessSpans keeps; spans on other subjects build theirs each time.
const maxProcessSubjects = 256

// ProcessSpans returns a ProcessSpans whose spans carry attrs, such as
// semconv.MessagingConsumerGroupName of the durable consumer.
func (t *Tracer) ProcessSpans(attrs ...attribute.KeyValue) *ProcessSpans {
	p := &ProcessSpans{t: t, attrs: attrs}
	p.known.Store(&map[string]process{})
	return p
}

// Start is StartProcess with the attributes given to ProcessSpans, except
// that messaging.message.body.size and messaging.message.id are added
// after the span starts, and only if it is recorded: a sampler sees the
// attributes the semantic conventions ask for at creation (system,
// operation, destination and the subscription's own).
func (p *ProcessSpans) Start(ctx context.Context, subject string, h nats.Header, bodySize int) (context.Context, trace.Span) {
	ctx = Extract(ctx, p.t.prop, h)
	proc := p.process(subject)
	ctx, span := p.t.tracer.Start(ctx, proc.name, proc.opts...)
	if span.IsRecording() {
		var buf [2]attribute.KeyValue
		span.SetAttributes(appendMessage(buf[:0], h, bodySize)...)
	}
	return ctx, span
}

func (p *ProcessSpans) process(subject string) process {
	if proc, ok := (*p.known.Load())[subject]; ok {
		return proc
	}
	all := append(spanAttrs(OperationProcess, semconv.MessagingOperationTypeProcess, subject, len(p.attrs)), p.attrs...)
	proc := process{name: OperationProcess + " " + subject, opts: []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(all...)}}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.known.Load()
	if len(old) < maxProcessSubjects {
		known := maps.Clone(old)
		known[subject] = proc
		p.known.Store(&known)
	}
	return proc
}

// Publish publishes msg on nc inside a producer span (see StartPublish)
// and ends the span, recording the error if publishing fails.
func (t *Tracer) Publish(ctx context.Context, nc *nats.Conn, msg *nats.Msg) error {
	_, span := t.StartPublish(ctx, msg)
	err := nc.PublishMsg(msg)
	End(span, err)
	return err
}

// Handler is a message handler that receives the context of the
// message's trace.
type Handler func(ctx context.Context, msg *nats.Msg) error

// MsgHandler adapts h to a core NATS subscription handler: each message
// is handled inside a consumer span (see StartProcess) that is a child of
// the producer's span, and an error h returns is recorded on it. ctx is
// the parent of every handler context: cancel it to tell running handlers
// to stop. attrs are added to every span.
func (t *Tracer) MsgHandler(ctx context.Context, h Handler, attrs ...attribute.KeyValue) nats.MsgHandler {
	return func(msg *nats.Msg) {
		var extra []attribute.KeyValue
		if msg.Sub != nil && msg.Sub.Queue != "" {
			extra = append(append(extra, attrs...), semconv.MessagingConsumerGroupName(msg.Sub.Queue))
		} else {
			extra = attrs
		}
		hctx, span := t.StartProcess(ctx, msg.Subject, msg.Header, len(msg.Data), extra...)
		defer func() {
			if r := recover(); r != nil {
				End(span, fmt.Errorf("tracingnats: handler panicked: %v", r))
				panic(r)
			}
		}()
		End(span, h(hctx, msg))
	}
}

// End ends span, first recording err on it when err is not nil: the error
// event, an Error status and the error.type attribute.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorTypeKey.String(fmt.Sprintf("%T", err)))
	}
	span.End()
}
