package resilience

import (
	"context"
	"sync"
	"time"
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

// deadline is the parent of an attempt's context when the attempt's
// timeout is enforced by a timerList instead of a runtime timer of its own.
// The attempt's context is a standard cancel context derived from it
// (context.WithCancel), so the function sees standard behaviour: Deadline
// reports the attempt's deadline, and when it passes Err and Cause report
// context.DeadlineExceeded. deadline propagates the caller's cancellation
// (Err and Cause are then the caller's) and hands both to its child through
// AfterFunc, which the context package uses for parents of its own kind.
//
// Only its child sees a deadline: Done returns a channel that is never
// closed (the context package reads it only to see that the parent can be
// cancelled, and learns of the cancellation through AfterFunc), so that no
// channel is made per attempt. Its fields after mu are guarded by mu.
type deadline struct {
	parent context.Context
	at     time.Time
	list   *timerList
	entry  timerEntry
	never  chan struct{} // the executor's; never closed
	closed chan struct{} // the executor's; closed

	mu         sync.Mutex
	err        error
	child      func()      // registered by AfterFunc
	stopParent func() bool // from context.AfterFunc on parent
}

// start makes d the deadline of an attempt starting now and returns the
// attempt's context. d must be new.
func (d *deadline) start(e *Executor, parent context.Context, now time.Time) (context.Context, context.CancelFunc) {
	d.parent, d.at, d.list = parent, now.Add(e.timeout), e.deadlines
	d.never, d.closed = e.never, e.closed
	d.entry.owner = d
	d.list.add(&d.entry, now, e.timeout)
	if parent.Done() != nil {
		stop := context.AfterFunc(parent, func() { d.cancel(parent.Err()) })
		d.mu.Lock()
		if d.err == nil {
			d.stopParent, stop = stop, nil
		}
		d.mu.Unlock()
		if stop != nil { // already cancelled
			stop()
		}
	}
	return context.WithCancel(d)
}

func (d *deadline) Deadline() (time.Time, bool) { return d.at, true }
func (d *deadline) Value(key any) any           { return d.parent.Value(key) }

func (d *deadline) Done() <-chan struct{} {
	if d.Err() != nil {
		return d.closed
	}
	return d.never
}

func (d *deadline) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// AfterFunc arranges for f to run once d is cancelled; the context package
// calls it for the attempt's context.
func (d *deadline) AfterFunc(f func()) func() bool {
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	d.child = f
	d.mu.Unlock()
	return d.stop
}

// stop is called when the attempt's context is cancelled by its own cancel
// function: it unregisters the child and lets go of the timer and the
// parent.
func (d *deadline) stop() bool {
	d.mu.Lock()
	registered := d.child != nil
	d.child = nil
	stopParent := d.stopParent
	d.stopParent = nil
	d.mu.Unlock()
	d.release(stopParent)
	return registered
}

func (d *deadline) release(stopParent func() bool) {
	d.list.remove(&d.entry)
	if stopParent != nil {
		stopParent()
	}
}

// expire is called by the timer list when the deadline passes.
func (d *deadline) expire() { d.cancel(context.DeadlineExceeded) }

func (d *deadline) cancel(err error) {
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		return
	}
	d.err = err
	f, stopParent := d.child, d.stopParent
	d.child, d.stopParent = nil, nil
	d.mu.Unlock()
	d.release(stopParent)
	if f != nil {
		f()
	}
}
