package resilience

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	attemptctx "github.com/vitamin-go/vitamin/internal/attempt"
)

// timerList runs the expire method of its entries when they fall due. A
// single time.AfterFunc timer serves all of them: an entry joins a list
// ordered by due time and leaves it when it is no longer needed, and the
// timer, when it fires, expires the entries that are due and sets itself
// for the next one. Entries of one list are meant to be due a fixed time
// after they join (a hedge delay, an attempt timeout), so joining at the
// tail is the common case. While entries keep leaving before they are due,
// joining and leaving cost a lock each and no timer operation, where a
// time.AfterFunc or context.WithTimeout per call would add and remove a
// runtime timer; when the list is empty the timer is left to lapse, so an
// idle executor holds no goroutine.
//
// It is safe for concurrent use.
type timerList struct {
	base time.Time // monotonic origin of due times

	mu      sync.Mutex
	head    *timerEntry
	tail    *timerEntry
	timer   *time.Timer
	armed   bool          // a firing is pending at or before armedAt
	armedAt time.Duration // since base
}

// timerEntry is a place in a timerList; its fields but owner are guarded
// by the list's mu.
type timerEntry struct {
	prev, next *timerEntry
	due        time.Duration // since the list's base
	queued     bool
	owner      interface{ expire() }
}

func newTimerList() *timerList { return &timerList{base: time.Now()} }

// add puts en on the list, due d after now.
func (t *timerList) add(en *timerEntry, now time.Time, d time.Duration) {
	at := now.Sub(t.base)
	due := at + d
	t.mu.Lock()
	en.due = due
	prev := t.tail
	for prev != nil && prev.due > due {
		prev = prev.prev
	}
	en.prev, en.queued = prev, true
	if prev == nil {
		en.next, t.head = t.head, en
	} else {
		en.next, prev.next = prev.next, en
	}
	if en.next == nil {
		t.tail = en
	} else {
		en.next.prev = en
	}
	if !t.armed || due < t.armedAt {
		t.arm(due, at)
	}
	t.mu.Unlock()
}

// remove takes en off the list, if it is on it.
func (t *timerList) remove(en *timerEntry) {
	t.mu.Lock()
	if en.queued {
		t.unlink(en)
	}
	t.mu.Unlock()
}

func (t *timerList) unlink(en *timerEntry) {
	if en.prev == nil {
		t.head = en.next
	} else {
		en.prev.next = en.next
	}
	if en.next == nil {
		t.tail = en.prev
	} else {
		en.next.prev = en.prev
	}
	en.prev, en.next, en.queued = nil, nil, false
}

// arm sets the timer to fire at due; called with mu held.
func (t *timerList) arm(due, now time.Duration) {
	if t.timer == nil {
		t.timer = time.AfterFunc(due-now, t.fire)
	} else {
		t.timer.Reset(due - now)
	}
	t.armed, t.armedAt = true, due
}

// fire expires the entries that are due, the last on this goroutine and
// the others on goroutines of their own (expire may block: a hedge runs
// its attempt).
func (t *timerList) fire() {
	var due []interface{ expire() }
	var one [1]interface{ expire() }
	now := time.Since(t.base)
	t.mu.Lock()
	t.armed = false
	for t.head != nil && t.head.due <= now {
		en := t.head
		t.unlink(en)
		if due == nil {
			due = one[:0]
		}
		due = append(due, en.owner)
	}
	if t.head != nil {
		t.arm(t.head.due, now)
	}
	t.mu.Unlock()
	for i, o := range due {
		if i == len(due)-1 {
			o.expire()
		} else {
			go o.expire()
		}
	}
}

// attemptCtx is the context of an attempt when the policy has a timeout or
// hedges. It behaves as context.WithTimeout(parent, timeout) would (or context.WithCancel
// without a timeout, or when the parent's deadline comes first), but its
// deadline is kept by the executor's deadline timer list instead of a
// runtime timer of its own, and nothing is allocated for it until somebody
// asks for its Done channel or derives a cancellable context from it.
//
// Contexts derived from it (context.WithCancel and the like) register
// through its AfterFunc method, as the context package does for parents of
// their own kind, and are cancelled with its error and cause. Err is
// context.DeadlineExceeded when the deadline passed, context.Canceled when
// its cancel function was called, and the parent's error when the parent
// ended first; context.Cause reports the parent's cause in that last case
// and the error otherwise (see Value).
//
// It is safe for concurrent use; its fields after mu are guarded by mu.
type attemptCtx struct {
	parent context.Context
	e      *Executor
	at     time.Time  // its own deadline; zero when the parent's applies
	entry  timerEntry // in e.deadlines while at is pending
	retry  bool       // a retry can follow: it answers attempt.Key with itself

	stalled atomic.Bool // ended by Stall

	// ended is set once err and byParent are: from then on they do not
	// change and may be read without mu.
	ended      atomic.Bool
	mu         sync.Mutex
	done       chan struct{} // made on demand
	err        error
	byParent   bool         // ended because the parent did
	funcs      []*afterFunc // registered by AfterFunc
	stopParent func() bool  // from context.AfterFunc on parent

	// The first AfterFunc registration — usually the only one, from the
	// context grpc-go or net/http derive for the attempt — is kept here
	// instead of in allocations of its own.
	first     afterFunc
	firstUsed bool
	firstBuf  [1]*afterFunc
}

// start makes a the context of an attempt starting now, and returns its
// cancel function. a must be new.
func (a *attemptCtx) start(e *Executor, parent context.Context, now time.Time) context.CancelFunc {
	a.parent, a.e = parent, e
	if e.timeout > 0 {
		at := now.Add(e.timeout)
		if pd, ok := parent.Deadline(); !ok || at.Before(pd) {
			a.at = at
			a.entry.owner = a
			e.deadlines.add(&a.entry, now, e.timeout)
		}
	}
	if parent.Done() != nil {
		stop := context.AfterFunc(parent, func() { a.end(parent.Err(), true) })
		a.mu.Lock()
		if a.err == nil {
			a.stopParent, stop = stop, nil
		}
		a.mu.Unlock()
		if stop != nil { // the parent had already ended
			stop()
		}
	}
	return a.cancel
}

// Deadline implements context.Context.
func (a *attemptCtx) Deadline() (time.Time, bool) {
	if !a.at.IsZero() {
		return a.at, true
	}
	return a.parent.Deadline()
}

// Done implements context.Context.
func (a *attemptCtx) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done == nil {
		a.done = make(chan struct{})
	}
	return a.done
}

// Err implements context.Context.
func (a *attemptCtx) Err() error {
	if !a.ended.Load() {
		return nil
	}
	return a.err
}

// Value implements context.Context. Until a has ended, and after it
// ended because its parent did, it is the parent's value. After a ended by
// itself (its deadline passed or its cancel function was called), a
// context of the context package's own that ended the same way answers
// first (see Executor.ownEnd): such a context, made from
// context.Background, holds no value but the ones by which the context
// package recognises it, and those tell context.Cause that a's cause is
// its own error rather than a cause its parent may get later.
func (a *attemptCtx) Value(key any) any {
	if key == (attemptctx.Key{}) && a.retry {
		return a
	}
	if a.ended.Load() && !a.byParent {
		if v := a.e.ownEnd(a.err).Value(key); v != nil {
			return v
		}
	}
	return a.parent.Value(key)
}

func (a *attemptCtx) String() string { return "resilience.attemptContext" }

type afterFunc struct {
	a *attemptCtx
	f func()
}

// AfterFunc arranges for f to run once a has ended, on the goroutine that
// ends it; the context package calls it for contexts derived from a.
func (a *attemptCtx) AfterFunc(f func()) func() bool {
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	var r *afterFunc
	if !a.firstUsed {
		a.firstUsed = true
		r = &a.first
		a.funcs = a.firstBuf[:0]
	} else {
		r = new(afterFunc)
	}
	r.a, r.f = a, f
	a.funcs = append(a.funcs, r)
	a.mu.Unlock()
	return r.stop
}

func (r *afterFunc) stop() bool {
	a := r.a
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.funcs {
		if x == r {
			a.funcs = append(a.funcs[:i], a.funcs[i+1:]...)
			return true
		}
	}
	return false
}

func (a *attemptCtx) cancel() { a.end(context.Canceled, false) }

// Stall implements attemptctx.Stall: it ends a as if its deadline had passed,
// so that the executor counts the attempt as timed out and retries it.
func (a *attemptCtx) Stall() bool { return a.endAs(context.DeadlineExceeded, false, true) }

// expire is called by the deadline list when the deadline passes.
func (a *attemptCtx) expire() { a.end(context.DeadlineExceeded, false) }

func (a *attemptCtx) end(err error, byParent bool) { a.endAs(err, byParent, false) }

// endAs ends a with err, unless it has ended already, and reports whether
// it did.
func (a *attemptCtx) endAs(err error, byParent, stalled bool) bool {
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		return false
	}
	a.err, a.byParent = err, byParent
	if stalled {
		a.stalled.Store(true)
	}
	a.ended.Store(true)
	if a.done == nil {
		a.done = a.e.closed
	} else {
		close(a.done)
	}
	funcs, stopParent := a.funcs, a.stopParent
	a.funcs, a.stopParent = nil, nil
	a.mu.Unlock()
	if !a.at.IsZero() {
		a.e.deadlines.remove(&a.entry)
	}
	if stopParent != nil {
		stopParent()
	}
	for _, r := range funcs {
		r.f()
	}
	return true
}
