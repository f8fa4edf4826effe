package resiliencegrpc

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vitamin-go/vitamin/internal/healthcheck"
	"github.com/vitamin-go/vitamin/resilience"
)

// PushbackTrailer is the trailer gRPC clients read as a server's request to
// wait before retrying, in milliseconds.
const PushbackTrailer = "grpc-retry-pushback-ms"

var codeNames = map[codes.Code]string{
	codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// CodeName returns the canonical upper-case name of c, as used in Retry.On.
func CodeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "CODE_" + strconv.Itoa(int(c))
}

// Classify returns the outcome of a gRPC error (see the package
// documentation). An error already annotated with resilience.WithOutcome
// keeps that outcome; errors without a gRPC status, and errors produced by
// a resilience policy, are classified by resilience.DefaultClassifier.
func Classify(err error) resilience.Outcome {
	if o, ok := resilience.OutcomeOf(err); ok {
		return o // classified closer to where it happened
	}
	var re *resilience.Error
	if errors.As(err, &re) {
		return resilience.DefaultClassifier(err)
	}
	s, ok := status.FromError(err)
	if !ok {
		return resilience.DefaultClassifier(err)
	}
	o := resilience.Outcome{Code: CodeName(s.Code())}
	switch s.Code() {
	case codes.Unavailable:
		o.Failure, o.Retryable = true, true
	case codes.DeadlineExceeded:
		o.Failure, o.Retryable, o.Timeout = true, true, true
	case codes.ResourceExhausted, codes.Aborted:
		o.Retryable = true
	case codes.Internal, codes.Unknown, codes.DataLoss:
		o.Failure = true
	}
	return o
}

func annotate(err error) error {
	if err == nil {
		return nil
	}
	return resilience.WithOutcome(err, Classify(err))
}

// policyError is a gRPC status for an error a resilience policy produced;
// it unwraps to that error so errors.Is(err, resilience.ErrCircuitOpen) holds.
type policyError struct {
	s   *status.Status
	err error
}

func (e *policyError) Error() string              { return e.s.Err().Error() }
func (e *policyError) GRPCStatus() *status.Status { return e.s }
func (e *policyError) Unwrap() error              { return e.err }

// clientError returns what an interceptor hands back to the application.
func clientError(err error) error {
	if err == nil {
		return nil
	}
	err = resilience.StripOutcome(err)
	var re *resilience.Error
	if !errors.As(err, &re) {
		return err
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	var code codes.Code
	switch {
	case errors.Is(err, resilience.ErrCircuitOpen):
		code = codes.Unavailable
	case errors.Is(err, resilience.ErrRejected):
		code = codes.ResourceExhausted
	case errors.Is(err, resilience.ErrTimeout):
		code = codes.DeadlineExceeded
	default:
		// Budget exhausted: report the last attempt's status.
		if s, ok := status.FromError(re.Last); ok && re.Last != nil {
			return &policyError{s: status.New(s.Code(), s.Message()), err: err}
		}
		code = codes.Unavailable
	}
	return &policyError{s: status.New(code, err.Error()), err: err}
}

// Picker chooses the executor for a call; it must be safe for concurrent use.
type Picker func(cc *grpc.ClientConn, method string) *resilience.Executor

// ForService picks the registry's executor for service (or, if service is
// empty, the connection's target) and the full method without its leading
// slash, such as "pkg.Orders/Get". An override keyed "orders/pkg.Orders/Get"
// therefore applies to one method.
func ForService(r *resilience.Registry, service string) Picker {
	return func(cc *grpc.ClientConn, method string) *resilience.Executor {
		s := service
		if s == "" && cc != nil {
			s = cc.Target()
		}
		return r.For(s, strings.TrimPrefix(method, "/"))
	}
}

// UnaryClientInterceptor runs unary calls through the executor pick returns
// (nil: the call goes straight through).
func UnaryClientInterceptor(pick Picker) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		e := pick(cc, method)
		if e == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		msg, isProto := reply.(proto.Message)
		if e.Policy().Hedge == nil || !isProto {
			err := e.Run(ctx, func(ctx context.Context) error {
				return annotate(invoker(ctx, method, req, reply, cc, opts...))
			})
			return clientError(err)
		}
		// Hedged attempts run concurrently: each decodes into its own reply.
		winner, err := resilience.Get(ctx, e, func(ctx context.Context) (proto.Message, error) {
			r := msg.ProtoReflect().New().Interface()
			return r, annotate(invoker(ctx, method, req, r, cc, opts...))
		})
		if err != nil {
			return clientError(err)
		}
		proto.Reset(msg)
		proto.Merge(msg, winner)
		return nil
	}
}

// StreamClientInterceptor guards stream establishment with the executor
// pick returns (breaker, rate limit, bulkhead) and records the stream's
// final outcome when it ends.
func StreamClientInterceptor(pick Picker) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		e := pick(cc, method)
		if e == nil {
			return streamer(ctx, desc, cc, method, opts...)
		}
		p, err := e.Acquire(ctx)
		if err != nil {
			return nil, clientError(err)
		}
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			p.Done(annotate(err))
			return nil, err
		}
		w := &clientStream{ClientStream: cs, permit: p}
		// Backstop, for a permit that RecvMsg did not release. The stream's
		// context ends when the caller gives up, and also when the stream
		// finishes: then grpc-go cancels it inside the RecvMsg that is about
		// to return the stream's real status, which RecvMsg records. So a
		// caller that gave up is recorded at once, and otherwise the
		// backstop waits streamGrace for RecvMsg before it records the
		// context's error (a caller that stopped reading a finished stream).
		context.AfterFunc(cs.Context(), func() {
			if err := ctx.Err(); err != nil {
				w.finish(err)
				return
			}
			time.AfterFunc(streamGrace, func() { w.finish(cs.Context().Err()) })
		})
		return w, nil
	}
}

// streamGrace is how long the stream backstop waits for RecvMsg to record
// a finished stream's status.
const streamGrace = time.Second

type clientStream struct {
	grpc.ClientStream
	once   sync.Once
	permit resilience.Permit
}

func (s *clientStream) finish(err error) {
	s.once.Do(func() { s.permit.Done(annotate(err)) })
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == io.EOF:
		s.finish(nil)
	case err != nil:
		s.finish(err)
	}
	return err
}

// Caller returns the identity of the service calling a server handler:
// the incoming metadata resilience.CallerMetadataKey if the call carries
// it, else the caller the user agent names (resilience.CallerUserAgent,
// which the Vitamin client sends), else "".
func Caller(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, resilience.CallerMetadataKey); len(v) > 0 {
		return v[0]
	}
	for _, ua := range metadata.ValueFromIncomingContext(ctx, "user-agent") {
		if c := resilience.CallerFromUserAgent(ua); c != "" {
			return c
		}
	}
	return ""
}

// shed converts a rejection into the status a server answers, and sets the
// pushback trailer (resilience.Pushback, in whole milliseconds rounded up)
// on every rejection.
func shed(ctx context.Context, err error) error {
	code := codes.Unavailable
	if errors.Is(err, resilience.ErrRejected) {
		var re *resilience.Error
		if errors.As(err, &re) && (re.Reason == resilience.ReasonRateLimit || re.Reason == resilience.ReasonCallerLimit) {
			code = codes.ResourceExhausted
		}
	} else if !errors.Is(err, resilience.ErrCircuitOpen) {
		return status.FromContextError(err).Err()
	}
	if wait, ok := resilience.Pushback(err); ok {
		ms := (wait + time.Millisecond - 1) / time.Millisecond
		_ = grpc.SetTrailer(ctx, metadata.Pairs(PushbackTrailer, strconv.FormatInt(int64(ms), 10)))
	}
	return status.Error(code, err.Error())
}

// admit applies the caller limit and the executor's limits; release must be
// called with the handler's error.
func admit(ctx context.Context, e *resilience.Executor, callers *resilience.CallerLimiter) (context.Context, func(error), error) {
	var cp resilience.CallerPermit
	if callers != nil {
		var err error
		if cp, err = callers.Acquire(ctx, Caller(ctx)); err != nil {
			return ctx, nil, shed(ctx, err)
		}
	}
	if e == nil {
		return ctx, func(error) { cp.Release() }, nil
	}
	p, err := e.Acquire(ctx)
	if err != nil {
		cp.Release()
		return ctx, nil, shed(ctx, err)
	}
	cancel := context.CancelFunc(func() {})
	if t := e.Policy().Timeout; t > 0 {
		ctx, cancel = context.WithTimeout(ctx, t)
	}
	return ctx, func(err error) {
		cancel()
		p.Done(annotate(err))
		cp.Release()
	}, nil
}

var errPanicked = status.Error(codes.Internal, "handler panicked")

// UnaryServerInterceptor sheds load before the handler runs: callers' limits
// (either argument may be nil), then the executor's rate limit, bulkhead and
// breaker; it bounds the handler's context with the executor's timeout. A
// shed call fails with RESOURCE_EXHAUSTED (rate or caller limit) or
// UNAVAILABLE (bulkhead, open circuit) and the PushbackTrailer.
//
// The methods of gRPC's health service (grpc.health.v1.Health: Check, List,
// Watch) go straight to the handler: they are never limited, shed, timed
// out or counted, so a Consul gRPC check keeps reporting while the server
// is at its limits.
func UnaryServerInterceptor(e *resilience.Executor, callers *resilience.CallerLimiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		if healthcheck.IsGRPC(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, release, err := admit(ctx, e, callers)
		if err != nil {
			return nil, err
		}
		hErr := errPanicked
		defer func() { release(hErr) }()
		resp, err = handler(ctx, req)
		hErr = err
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams: the limits
// hold for the stream's whole life. A health Watch stream is exempt like
// every health method, so it holds no bulkhead slot however long it stays
// open.
func StreamServerInterceptor(e *resilience.Executor, callers *resilience.CallerLimiter) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if healthcheck.IsGRPC(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, release, err := admit(ss.Context(), e, callers)
		if err != nil {
			return err
		}
		hErr := errPanicked
		defer func() { release(hErr) }()
		hErr = handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		return hErr
	}
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
