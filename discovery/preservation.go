package discovery

import (
	"math"
	"time"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// SelfPreservation configures how a watch protects its callers from a
// backend that suddenly reports far fewer instances than before — an empty
// answer, or a drop of more than MaxDrop of the instances. Such an answer
// is served only after ConfirmReads further reads, taken ConfirmAfter
// apart, agree that the set really shrank; until then the last good set
// is served and snapshots say Preserved. The zero value gives the defaults.
// It is plain data, safe to copy and to read concurrently.
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
}

// Defaults of SelfPreservation.
const (
	DefaultMaxDrop      = 0.5
	DefaultConfirmReads = 1
	DefaultConfirmAfter = 100 * time.Millisecond
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
	switch {
	case math.IsNaN(p.MaxDrop) || p.MaxDrop <= 0 || p.MaxDrop > 1:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.MaxDrop", p.MaxDrop, "not in (0, 1]", nil)
	case p.ConfirmReads < 0:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.ConfirmReads", p.ConfirmReads, "negative", nil)
	case p.ConfirmAfter < 0:
		return p, fielderr.New(ErrInvalidConfig, "SelfPreservation.ConfirmAfter", p.ConfirmAfter, "negative", nil)
	}
	return p, nil
}

// Guard applies [SelfPreservation] to the successive answers of a backend
// for one service. Backends that implement [Watcher] feed each answer to
// Observe and serve what it returns.
//
// Guard is not safe for concurrent use; one goroutine owns it.
type Guard struct {
	cfg     SelfPreservation
	good    []Instance
	hasGood bool
	pending int
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
	// Serve is the set to serve: the answer, or the last good set.
	Serve []Instance
	// Held is true when the answer was suspicious and not yet confirmed:
	// Serve is the last good set and the backend should read again after
	// ConfirmAfter, without waiting for a change.
	Held bool
	// Confirmed is true when a suspicious answer was just confirmed and
	// is now served.
	Confirmed bool
	// Previous is the number of instances in the last good set.
	Previous int
}

// Observe takes the backend's latest answer and says what to serve.
func (g *Guard) Observe(answer []Instance) Verdict {
	v := Verdict{Previous: len(g.good)}
	if g.cfg.Disabled || !g.hasGood || !g.suspicious(answer) {
		g.good, g.hasGood, g.pending = answer, true, 0
		v.Serve = answer
		return v
	}
	g.pending++
	if g.pending > g.cfg.ConfirmReads {
		g.good, g.pending = answer, 0
		v.Serve, v.Confirmed = answer, true
		return v
	}
	v.Serve, v.Held = g.good, true
	return v
}

// Good returns the last good set, and false if there is none yet.
func (g *Guard) Good() ([]Instance, bool) { return g.good, g.hasGood }

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
