package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"

	"go.opentelemetry.io/otel/baggage"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
)

// Transport is the http.RoundTripper of an HTTP client made by NewHTTP.
// Requests whose URL host is the service name (http://orders/v1/orders/42)
// go to an instance chosen by Vitamin's balancer, under the service's
// resilience policy, traced, and with the caller's identity in the
// resilience.CallerHeader header; other requests go straight to the base
// transport.
//
// Only idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any
// request with an Idempotency-Key header) are retried or hedged, unless
// WithRetryNonIdempotent says otherwise; a retry goes to another instance.
//
// A request that provably reached no server — the connection to the
// instance could not be opened (a *net.OpError whose Op is "dial":
// refused, unreachable, dial timeout) — is sent again at once to an
// instance the call has not tried, whatever its method, up to 3 times per
// attempt and never twice to one instance. These transparent retries are
// part of the attempt: the policy's MaxAttempts, budget and breaker do
// not see them. A request whose body cannot be replayed (a Body without
// GetBody) is not. An error once a connection was open — a reset, EOF or
// timeout — is not transparent, because the server may have processed
// the request; it is an attempt's failure, retried by the policy.
// The latency the balancer learns from is the time to the response headers.
// For https URLs, certificates are checked against the instance's address
// unless the base transport's TLSClientConfig.ServerName says otherwise.
//
// A Transport follows the service's instances from construction until
// Close. It is safe for concurrent use.
type Transport struct {
	service  string
	core     *core
	base     http.RoundTripper
	policy   http.RoundTripper // resilience → tracing → pick
	inner    http.RoundTripper // tracing → pick
	exec     func(*http.Request) *resilience.Executor
	caller   string
	retryAll bool

	stopRouting func() // stops following the Routing
	cancel      context.CancelFunc
	done        chan struct{} // closed when the watch goroutine ends
	closed      atomic.Bool
	closeOnce   sync.Once
}

// NewTransport returns a Transport for service; see NewHTTP.
func NewTransport(service string, cfg Config, opts ...HTTPOption) (*Transport, error) {
	o, err := buildHTTPOptions(service, cfg, opts)
	if err != nil {
		return nil, err
	}
	base := o.base
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	c := newCore(service, o.balancing, false, o.logger, o.meter)
	c.guardOpts.handler = o.guardHandler
	o.monitor.add(c)
	t := &Transport{
		service: service, core: c, base: base, caller: o.caller,
		retryAll: o.retryAll, done: make(chan struct{}), stopRouting: func() {},
	}
	if o.routing != nil {
		t.stopRouting = o.routing.follow(c)
	}
	var inner http.RoundTripper = &pickTransport{core: c, base: base}
	if o.tracing {
		inner = tracinghttp.Transport(inner, o.tracingOpts...)
	}
	t.inner, t.policy = inner, inner
	if o.policies != nil {
		reg := o.policies
		t.exec = func(*http.Request) *resilience.Executor { return reg.For(service, "") }
		t.policy = resilience.NewRoundTripper(inner, t.exec)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go func() {
		defer close(t.done)
		follow(ctx, c, &o.options, nil, nil)
	}()
	return t, nil
}

// NewHTTP returns an HTTP client for service, balanced as cfg says, whose
// Transport is a *Transport (see there). Close it with CloseHTTP when done,
// to stop its discovery watch. An invalid cfg field or option fails with a
// *FieldError.
func NewHTTP(service string, cfg Config, opts ...HTTPOption) (*http.Client, error) {
	t, err := NewTransport(service, cfg, opts...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// CloseHTTP closes the Transport of a client made by NewHTTP. It does
// nothing for other clients.
func CloseHTTP(c *http.Client) error {
	if t, ok := c.Transport.(*Transport); ok {
		return t.Close()
	}
	return nil
}

// Close stops following the service, waits for the watch to end and closes
// idle connections. Requests after Close fail. It always returns nil.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.cancel()
		<-t.done
		t.stopRouting()
		t.core.close()
		t.CloseIdleConnections()
	})
	return nil
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *Transport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// RoundTrip sends req to an instance of the service.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Hostname() != t.service {
		return t.base.RoundTrip(req)
	}
	if t.closed.Load() {
		closeBody(req)
		return nil, ErrClosed
	}
	ctx := req.Context()
	if err := t.core.waitFirst(ctx); err != nil {
		closeBody(req)
		return nil, err
	}
	cctx, cs := withCall(ctx)
	b := t.core.bal.Load()
	if p := b.Pin; p != nil {
		cs.pin = req.Header.Get(p.Header)
		if cs.pin == "" && p.Baggage != "-" {
			cs.pin = baggage.FromContext(ctx).Member(p.Baggage).Value()
		}
	}
	if st := b.Sticky; st != nil {
		cs.sticky = req.Header.Get(st.Header)
	}
	r := req.WithContext(cctx)
	if t.caller != "" {
		r.Header = req.Header.Clone()
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header.Set(resilience.CallerHeader, t.caller)
	}
	var resp *http.Response
	var err error
	if t.retryAll || idempotent(req) || t.exec == nil {
		resp, err = t.policy.RoundTrip(r)
	} else {
		resp, err = t.once(r)
	}
	return resp, resilience.StripOutcome(err)
}

// once sends a request that must not be retried: the policy's breaker,
// limits and timeout apply, its retries and hedges do not.
func (t *Transport) once(req *http.Request) (*http.Response, error) {
	e := t.exec(req)
	ctx := req.Context()
	p, err := e.Acquire(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	cancel := context.CancelFunc(func() {})
	if d := e.Policy().Timeout; d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
		req = req.WithContext(ctx)
	}
	resp, err := t.inner.RoundTrip(req)
	switch {
	case err != nil:
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = resilience.Classify(err)
		}
		p.Done(err)
		return nil, err
	case resp.StatusCode >= 500:
		p.Done(&resilience.StatusError{StatusCode: resp.StatusCode})
	default:
		p.Done(nil)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// maxTransparent bounds the transparent retries of one attempt: after that
// many, or when every instance has been tried, the attempt fails with the
// last error.
const maxTransparent = 3

// pickTransport sends one attempt to the instance the core picks. An
// attempt that provably never reached a server (neverSent) is sent again,
// transparently, to an instance the call has not tried, at most
// maxTransparent times: these retries are part of the attempt, so the
// policy's MaxAttempts and budget do not see them.
type pickTransport struct {
	core *core
	base http.RoundTripper
}

func (p *pickTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cs := callFrom(req.Context())
	m, err := p.core.pick(cs)
	if err != nil {
		closeBody(req)
		return nil, resilience.WithOutcome(err, noInstances)
	}
	for n := 0; ; n++ {
		r := new(http.Request)
		*r = *req
		if n > 0 && req.Body != nil && req.Body != http.NoBody {
			if r.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		u := *req.URL
		u.Host = m.ep.addr
		r.URL = &u
		start := p.core.start(m.ep)
		gen := p.core.watch(req.Context(), cs, m.ep, start)
		resp, err := p.base.RoundTrip(r)
		if cs.unwatch(gen) && err == nil {
			// The instance answered just as the watch gave up on it: the
			// attempt's context has ended, so its body cannot be read.
			_ = resp.Body.Close()
			resp, err = nil, req.Context().Err()
		}
		p.core.finish(m.ep, start, httpOutcome(req, resp, err))
		if err == nil || n == maxTransparent || !neverSent(err) || req.Context().Err() != nil || !replayable(req) {
			return resp, err
		}
		next, again, perr := p.core.pickAgain(cs)
		if perr != nil || again {
			return resp, err // nowhere else to go
		}
		p.core.redispatched(reasonNotSent)
		m = next
	}
}

// httpOutcome is how an attempt's result counts for the balancer.
func httpOutcome(req *http.Request, resp *http.Response, err error) outcome {
	switch {
	case err != nil && req.Context().Err() != nil:
		if errors.Is(req.Context().Err(), context.DeadlineExceeded) {
			return outcomeSlow
		}
		return outcomeCanceled // by the caller, or a hedge that lost
	case errors.Is(err, syscall.ECONNREFUSED):
		return outcomeRefused
	case err != nil:
		return outcomeFailure
	case resp.StatusCode >= 500:
		return outcomeFailure
	}
	return outcomeSuccess
}

// neverSent reports whether err proves that the request reached no server:
// the base transport could not open a connection to the instance (a
// *net.OpError from dialing: refused, unreachable, dial timeout). net/http
// dials only for a request it has not written anywhere, or for one it
// retries itself after a reused connection failed — which it does only
// when nothing was written or the request is idempotent (see
// http.Transport) — so sending it to another instance is safe for any
// method. A reset, EOF or timeout after the connection was open does not
// count: the server may have received and processed the request.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayable reports whether req's body can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}
