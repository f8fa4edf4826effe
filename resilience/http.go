package resilience

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vitamin-go/vitamin/internal/healthcheck"
)

// StatusError is an HTTP response whose status counts as a failed attempt
// (429 and 5xx). The round tripper retries such responses by policy and, if
// the last attempt still fails, hands the response itself to the caller.
//
// StatusError values are immutable and safe for concurrent use.
type StatusError struct {
	// StatusCode is the response's status.
	StatusCode int
}

// Error implements error.
func (e *StatusError) Error() string {
	return "resilience: HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
}

// httpOutcome classifies a status: 429 and 5xx are failures; all but 501
// are retryable; 429 does not count against the breaker (the server is
// shedding load, not broken).
func httpOutcome(code int) (Outcome, bool) {
	switch {
	case code == http.StatusTooManyRequests:
		return Outcome{Code: "429", Retryable: true}, true
	case code >= 500:
		return Outcome{Code: strconv.Itoa(code), Failure: true, Retryable: code != http.StatusNotImplemented}, true
	}
	return Outcome{}, false
}

// ExecutorForHost picks, for an outgoing request, the registry's executor
// for the request's host (service), with no method.
func ExecutorForHost(r *Registry) func(*http.Request) *Executor {
	return func(req *http.Request) *Executor { return r.For(req.URL.Hostname(), "") }
}

// NewRoundTripper returns a round tripper that runs each request through
// the executor pick returns for it (nil: straight through to next; next
// nil: http.DefaultTransport). Responses with status 429 or 5xx count as
// failures and are retried by policy; the request body is replayed on each
// attempt. The policy's timeout bounds each attempt, including reading the
// body of a successful response. A request refused by a policy fails with
// an error matching ErrCircuitOpen, ErrRejected, ErrTimeout or
// ErrBudgetExhausted.
//
// The round tripper is safe for concurrent use.
func NewRoundTripper(next http.RoundTripper, pick func(*http.Request) *Executor) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &roundTripper{next: next, pick: pick}
}

type roundTripper struct {
	next http.RoundTripper
	pick func(*http.Request) *Executor
}

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	e := t.pick(req)
	if e == nil {
		return t.next.RoundTrip(req)
	}
	getBody := req.GetBody
	if req.Body != nil && req.Body != http.NoBody && getBody == nil {
		buf, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		getBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	}
	var mu sync.Mutex
	first := true
	resp, err := GetDetached(req.Context(), e, func(ctx context.Context, cancel context.CancelFunc) (*http.Response, error) {
		r := req.WithContext(ctx)
		mu.Lock()
		replay := !first
		first = false
		mu.Unlock()
		if getBody != nil && (replay || req.GetBody == nil) {
			body, err := getBody()
			if err != nil {
				return nil, Permanent(err)
			}
			r.Body = body
		}
		resp, err := t.next.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		if o, failed := httpOutcome(resp.StatusCode); failed {
			// Keep (a bounded part of) the body so the caller can read it if
			// this turns out to be the last attempt, and free the connection.
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(body))
			return resp, WithOutcome(&StatusError{StatusCode: resp.StatusCode}, o)
		}
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	})
	var se *StatusError
	if err != nil && resp != nil && errors.As(err, &se) {
		return resp, nil
	}
	if err != nil {
		return nil, StripOutcome(err)
	}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	healthPaths []string
}

// DefaultHealthPaths returns the request paths Middleware treats as health
// checks unless WithHealthPaths says otherwise: /health, /healthz, /livez,
// /readyz, /ready and /live, the same list tracinghttp leaves out of
// traces. Each call returns a new slice.
func DefaultHealthPaths() []string { return healthcheck.Paths() }

// WithHealthPaths replaces DefaultHealthPaths: requests whose URL path is
// exactly one of paths pass Middleware untouched. No paths limits every
// request. To add a path, pass append(DefaultHealthPaths(), "/status").
func WithHealthPaths(paths ...string) MiddlewareOption {
	return func(c *middlewareConfig) { c.healthPaths = append([]string{}, paths...) }
}

// Middleware protects an HTTP server. For each request it applies the
// caller's limit from callers (keyed by CallerHeader), then the executor's
// rate limit, bulkhead and circuit breaker, and bounds the handler's
// context with the executor's timeout; either may be nil. A shed request is
// answered 429 (rate or caller limit) or 503 (bulkhead, open circuit) with a
// Retry-After header (see Pushback), without calling next. Responses with
// status 5xx count as failures for the breaker. Retries and hedges do not
// apply on the server side.
//
// Health checks (the paths of DefaultHealthPaths, or of WithHealthPaths)
// go straight to next: they are never limited, shed, timed out or counted,
// so a check keeps reporting while the limits it reports on are full, and
// an instance under load is not deregistered for being busy.
func Middleware(e *Executor, callers *CallerLimiter, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	c := middlewareConfig{healthPaths: healthcheck.Paths()}
	for _, o := range opts {
		o(&c)
	}
	health := c.healthPaths
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slices.Contains(health, r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			if callers != nil {
				cp, err := callers.Acquire(ctx, r.Header.Get(CallerHeader))
				if err != nil {
					writeShed(w, err)
					return
				}
				defer cp.Release()
			}
			if e == nil {
				next.ServeHTTP(w, r)
				return
			}
			p, err := e.Acquire(ctx)
			if err != nil {
				writeShed(w, err)
				return
			}
			if e.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, e.timeout)
				defer cancel()
				r = r.WithContext(ctx)
			}
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			failed := true // a panicking handler counts as a failure
			defer func() {
				var err error
				if failed {
					err = errors.New("resilience: handler panicked")
				} else if o, bad := httpOutcome(sw.status); bad {
					err = WithOutcome(&StatusError{StatusCode: sw.status}, o)
				}
				p.Done(err)
			}()
			next.ServeHTTP(sw, r)
			failed = false
		})
	}
}

// BusyRetryAfter is the pushback for a rejection whose own wait is unknown:
// a full bulkhead, a caller's MaxConcurrent or an adaptive concurrency
// limit (a slot frees when some call in flight ends, which the server
// cannot foresee), and a circuit with no open time left. One second is
// also the shortest Retry-After HTTP can say.
const BusyRetryAfter = time.Second

// Pushback returns how long a server that shed a call with err asks the
// caller to wait before trying again (HTTP Retry-After, gRPC
// grpc-retry-pushback-ms): the *Error's RetryAfter (the time to the next
// rate-limit permit, the circuit's remaining open time) when it is known,
// else BusyRetryAfter. ok is false if err is not a shed (a timeout, or no
// *Error at all); those carry no pushback.
func Pushback(err error) (wait time.Duration, ok bool) {
	var re *Error
	if !errors.As(err, &re) {
		return 0, false
	}
	switch re.Reason {
	case ReasonRateLimit, ReasonCallerLimit, ReasonBulkhead, ReasonLimit, ReasonCircuitOpen:
		if re.RetryAfter > 0 {
			return re.RetryAfter, true
		}
		return BusyRetryAfter, true
	}
	return 0, false
}

// ShedStatus returns the HTTP status and Retry-After seconds a server
// answers for err: 429 for rate and caller limits, 503 for a full bulkhead,
// an exceeded concurrency limit or an open circuit, 504 for a timeout; ok is
// false for errors that are not a shed. Retry-After is Pushback rounded up
// to whole seconds (at least 1), and 0 (none) for a timeout.
func ShedStatus(err error) (status, retryAfterSeconds int, ok bool) {
	var re *Error
	if !errors.As(err, &re) {
		return 0, 0, false
	}
	if re.Reason == ReasonTimeout {
		return http.StatusGatewayTimeout, 0, true
	}
	wait, ok := Pushback(err)
	if !ok {
		return 0, 0, false
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	if re.Reason == ReasonRateLimit || re.Reason == ReasonCallerLimit {
		return http.StatusTooManyRequests, secs, true
	}
	return http.StatusServiceUnavailable, secs, true
}

func writeShed(w http.ResponseWriter, err error) {
	status, secs, ok := ShedStatus(err)
	if !ok {
		status, secs = http.StatusServiceUnavailable, 1
	}
	if secs > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	http.Error(w, err.Error(), status)
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.status, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RetryAfter parses a Retry-After header in seconds; 0 if absent or not a number.
func RetryAfter(h http.Header) time.Duration {
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
