package client

import (
	"context"
	"errors"
	"sync"
)

// Call is one downstream call of a fan-out: a name for its result, the
// work, and an optional fallback. It is plain data.
type Call struct {
	// Name identifies the call in the results.
	Name string
	// Do makes the call. It receives the fan-out's context.
	Do func(ctx context.Context) (any, error)
	// Fallback, if not nil, runs when Do fails and receives Do's error;
	// its result replaces Do's. Tell causes apart with errors.Is
	// (resilience.ErrCircuitOpen, ErrNoInstances, context.DeadlineExceeded…).
	Fallback func(ctx context.Context, cause error) (any, error)
}

// Result is the outcome of one Call. It is a plain value.
type Result struct {
	// Name is the call's name.
	Name string
	// Value is what Do (or the fallback) returned.
	Value any
	// Err is the call's error: Do's, or the fallback's when the fallback
	// failed too; nil on success, also when the fallback saved the call.
	Err error
	// Cause is Do's error when the fallback ran, whatever its result.
	Cause error
	// FellBack says the fallback ran.
	FellBack bool
}

// Results are the outcomes of a fan-out, in the order of its calls.
type Results []Result

// Get returns the result of the call named name, and false if there is none.
func (rs Results) Get(name string) (Result, bool) {
	for _, r := range rs {
		if r.Name == name {
			return r, true
		}
	}
	return Result{}, false
}

// Err joins the errors of the calls that failed (each a *CallError), or
// returns nil when all succeeded.
func (rs Results) Err() error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, &CallError{Name: r.Name, Err: r.Err})
		}
	}
	return errors.Join(errs...)
}

// CallError is the error of one call of a fan-out. It unwraps to the
// call's error. It is not modified after it is returned, so it is safe for
// concurrent use.
type CallError struct {
	// Name is the call's name.
	Name string
	// Err is the call's error.
	Err error
}

// Error names the call and its error.
func (e *CallError) Error() string { return "client: call " + e.Name + ": " + e.Err.Error() }

// Unwrap returns the call's error.
func (e *CallError) Unwrap() error { return e.Err }

// FanOut runs calls concurrently — the gateway case: one request, several
// downstream calls — and returns when all have returned, with each call's
// value or error: a partial result when some failed. Each call runs its own
// fallback on failure. A panic in a call is not recovered. ctx bounds all
// calls; give it a deadline so that one slow call cannot hold the others'
// results back.
func FanOut(ctx context.Context, calls ...Call) Results {
	rs := make(Results, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		rs[i].Name = c.Name
		wg.Go(func() {
			r := &rs[i]
			if c.Do == nil {
				r.Err = errors.New("client: Call.Do is nil")
				return
			}
			r.Value, r.Err = c.Do(ctx)
			if r.Err != nil && c.Fallback != nil {
				r.Cause, r.FellBack = r.Err, true
				r.Value, r.Err = c.Fallback(ctx, r.Err)
			}
		})
	}
	wg.Wait()
	return rs
}
