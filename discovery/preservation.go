package discovery

import (
	"math"
	"slices"
	"time"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// SelfPreservation configures how a watch protects its callers from a
// backend that suddenly reports far fewer instances than before — an empty
// answer, or a drop of more than MaxDrop of the instances. Such an answer
// is served only after ConfirmReads further reads, taken ConfirmAfter
// apart, agree that the set really shrank; until then the last good set
// is served and snapshots say Preserved.
//
// A backend that may have lost its state — it restarted, its index went
// backwards, it answers again after failing — calls for more caution, not
// less: for RestartGrace, an answer that lacks any instance of the last
// good set is not believed, however small the drop, while the instances'
// registrars restore what the backend forgot (see [Guard.Restarted]).
//
// The zero value gives the defaults. It is plain data, safe to copy and to
// read concurrently.
type SelfPreservation struct {
	// Disabled turns self-preservation off: every answer is served as is.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// MaxDrop is the largest share of instances, in (0, 1], that may
	// disappear in one answer without confirmation. An empty answer always
	// needs confirmation. Default 0.5.
	MaxDrop float64 `yaml:"max_drop" json:"max_drop"`
	// ConfirmReads is the number of further reads that must agree before a
	// suspicious answer is served. Default 1 (a second read).
	ConfirmReads int `yaml:"confirm_reads" json:"confirm_reads"`
	// ConfirmAfter is the wait before each confirming read. Default 100ms.
	ConfirmAfter time.Duration `yaml:"confirm_after" json:"confirm_after"`
	// RestartGrace is how long, after the backend may have lost its
	// state, answers that lack instances of the last good set are held:
	// the last good set is served, with the instances the answers add,
	// marked Preserved, while an answer lacks any of them — also after an
	// answer held them all again, since an agent that restarts with its
	// data directory restores its instances before their checks, which
	// start critical. After RestartGrace, answers are judged as usual (an
	// empty set or a large drop still needs its confirming reads). It
	// should cover the time registrars take to notice the restart and
	// register their instances again. Default 5s.
	RestartGrace time.Duration `yaml:"restart_grace" json:"restart_grace"`
}

// Defaults of SelfPreservation.
const (
	DefaultMaxDrop      = 0.5
	DefaultConfirmReads = 1
	DefaultConfirmAfter = 100 * time.Millisecond
	DefaultRestartGrace = 5 * time.Second
)

// WithDefaults returns p with zero fields set to their defaults, or a
// [*FieldError] matching [ErrInvalidConfig] that names a bad field.
func (p SelfPreservation) WithDefaults() (SelfPreservation, error) {
	if p.MaxDrop == 0 {
		p.MaxDrop = DefaultMaxDrop
	}
	if p.ConfirmReads == 0 {
		p.ConfirmReads = DefaultConfirmReads
	}
	if p.ConfirmAfter == 0 {
		p.ConfirmAfter = DefaultConfirmAfter
	}
	if p.RestartGrace == 0 {
		p.RestartGrace = DefaultRestartGrace
	}
	switch {
	case math.IsNaN(p.MaxDrop) || p.MaxDrop <= 0 || p.MaxDrop > 1:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.MaxDrop", p.MaxDrop, "not in (0, 1]", nil)
	case p.ConfirmReads < 0:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.ConfirmReads", p.ConfirmReads, "negative", nil)
	case p.ConfirmAfter < 0:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.ConfirmAfter", p.ConfirmAfter, "negative", nil)
	case p.RestartGrace < 0:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.RestartGrace", p.RestartGrace, "negative", nil)
	}
	return p, nil
}

// Guard applies [SelfPreservation] to the successive answers of a backend
// for one service. Backends that implement [Watcher] feed each answer to
// Observe and serve what it returns, and call Restarted when the backend
// may have lost its state.
//
// Guard is not safe for concurrent use; one goroutine owns it.
type Guard struct {
	cfg       SelfPreservation
	good      []Instance // the last good set
	served    []Instance // what the last verdict served
	hasGood   bool
	pending   int
	graceTo   time.Time // while not zero, answers lacking instances of good are held
	graceHeld bool      // the last answer was held by the grace
}

// NewGuard returns a guard for cfg, with its defaults filled in.
func NewGuard(cfg SelfPreservation) (*Guard, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg}, nil
}

// Config returns the guard's settings with defaults filled in.
func (g *Guard) Config() SelfPreservation { return g.cfg }

// Verdict is what a [Guard] decided about one answer. It is a value;
// Serve must not be modified.
type Verdict struct {
	// Serve is the set to serve: the answer, or the last good set (with
	// the instances the answer adds, during a restart grace).
	Serve []Instance
	// Held is true when the answer is not served as it is: it was
	// suspicious and not yet confirmed, or it lacks instances during a
	// restart grace. The backend should read again: after ConfirmAfter,
	// without waiting for a change, or, when Grace is set, on the next
	// change but within Grace.
	Held bool
	// Grace is set when the answer is held because of a restart grace:
	// the time left of it.
	Grace time.Duration
	// Restored is true when the answer ended a restart grace by holding
	// every instance of the last good set again.
	Restored bool
	// Confirmed is true when a suspicious answer was just confirmed and
	// is now served.
	Confirmed bool
	// Previous is the number of instances in the last good set.
	Previous int
}

// Restarted tells the guard that the backend may have lost its state: it
// restarted, its index went backwards, or it answers again after failing.
// For RestartGrace from now, an answer that lacks any instance of the last
// good set is held (see [Verdict.Grace]). Calling it again during the
// grace starts the grace over. It does nothing when self-preservation is
// disabled or there is no good set yet.
func (g *Guard) Restarted() {
	if g.cfg.Disabled || !g.hasGood || len(g.good) == 0 {
		return
	}
	g.graceTo, g.pending = time.Now().Add(g.cfg.RestartGrace), 0
}

// Observe takes the backend's latest answer and says what to serve.
func (g *Guard) Observe(answer []Instance) Verdict {
	v := Verdict{Previous: len(g.good)}
	if !g.graceTo.IsZero() {
		switch left := time.Until(g.graceTo); {
		case left <= 0:
			g.graceTo, g.graceHeld = time.Time{}, false // over: judge the answer as usual
		case lacks(answer, g.good):
			g.graceHeld = true
			v.Serve, v.Held, v.Grace = union(g.good, answer), true, left
			g.served = v.Serve
			return v
		default:
			// Every instance is back. The grace goes on all the same:
			// an agent that restarted with its data directory restores
			// its instances first and then their checks, critical.
			v.Restored, g.graceHeld = g.graceHeld, false
		}
	}
	switch {
	case g.cfg.Disabled || !g.hasGood || !g.suspicious(answer):
		g.good, g.hasGood, g.pending = answer, true, 0
		v.Serve = answer
	case g.pending+1 > g.cfg.ConfirmReads:
		g.good, g.pending = answer, 0
		v.Serve, v.Confirmed = answer, true
	default:
		g.pending++
		v.Serve, v.Held = g.good, true
	}
	g.served = v.Serve
	return v
}

// Good returns the set the guard last said to serve (the last good set,
// with what a restart grace added), and false if there is none yet.
func (g *Guard) Good() ([]Instance, bool) { return g.served, g.hasGood }

func (g *Guard) suspicious(answer []Instance) bool {
	prev := len(g.good)
	if prev == 0 || len(answer) >= prev {
		return false
	}
	if len(answer) == 0 {
		return true
	}
	return float64(prev-len(answer))/float64(prev) > g.cfg.MaxDrop
}

// lacks reports whether some instance of good (by ID) is not in answer.
func lacks(answer, good []Instance) bool {
	ids := make(map[string]struct{}, len(answer))
	for _, in := range answer {
		ids[in.ID] = struct{}{}
	}
	for _, in := range good {
		if _, ok := ids[in.ID]; !ok {
			return true
		}
	}
	return false
}

// union returns answer with the instances of good it lacks (by ID), sorted.
func union(good, answer []Instance) []Instance {
	out := slices.Clone(answer)
	ids := make(map[string]struct{}, len(answer))
	for _, in := range answer {
		ids[in.ID] = struct{}{}
	}
	for _, in := range good {
		if _, ok := ids[in.ID]; !ok {
			out = append(out, in)
		}
	}
	SortInstances(out)
	return out
}
