package client

import (
	"context"
	"errors"
	"io"
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
	pin      *Pin
	sticky   *Sticky
	retryAll bool

	cancel    context.CancelFunc
	done      chan struct{} // closed when the watch goroutine ends
	closed    atomic.Bool
	closeOnce sync.Once
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
	t := &Transport{
		service: service, core: c, base: base, caller: o.caller,
		pin: o.balancing.Pin, sticky: o.balancing.Sticky, retryAll: o.retryAll,
		done: make(chan struct{}),
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
	if t.pin != nil {
		cs.pin = req.Header.Get(t.pin.Header)
		if cs.pin == "" && t.pin.Baggage != "-" {
			cs.pin = baggage.FromContext(ctx).Member(t.pin.Baggage).Value()
		}
	}
	if t.sticky != nil {
		cs.sticky = req.Header.Get(t.sticky.Header)
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

// pickTransport sends one attempt to the instance the core picks.
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
	r := new(http.Request)
	*r = *req
	u := *req.URL
	u.Host = m.ep.addr
	r.URL = &u
	start := p.core.start(m.ep)
	resp, err := p.base.RoundTrip(r)
	o := outcomeSuccess
	switch {
	case err != nil && req.Context().Err() != nil:
		o = outcomeIgnore
		if errors.Is(req.Context().Err(), context.DeadlineExceeded) {
			o = outcomeSlow
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		o = outcomeRefused
	case err != nil:
		o = outcomeFailure
	case resp.StatusCode >= 500:
		o = outcomeFailure
	}
	p.core.finish(m.ep, start, o)
	return resp, err
}
