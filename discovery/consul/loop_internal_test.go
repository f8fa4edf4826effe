package consul

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
)

// step is one scripted answer of the health endpoint.
type step struct {
	index uint64
	ids   []string
	err   error
}

// script answers queries from a fixed sequence and records the WaitIndex of
// each; past the end it blocks until the loop is cancelled, as a blocking
// query with no change would. It is the one fake in these tests: a real
// agent does not let a test move its index backwards.
type script struct {
	steps []step
	gate  chan struct{} // one receive per answer, so the test sees each one
	asked chan uint64
	waits chan time.Duration // the WaitTime of each query, if not nil
}

func (s *script) health(ctx context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	n := len(s.asked)
	s.asked <- q.WaitIndex
	if s.waits != nil {
		s.waits <- q.WaitTime
	}
	if n >= len(s.steps) {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	st := s.steps[n]
	if st.err != nil {
		return nil, nil, st.err
	}
	var out []*api.ServiceEntry
	for _, id := range st.ids {
		out = append(out, &api.ServiceEntry{
			Node:    &api.Node{Address: "10.0.0.1"},
			Service: &api.AgentService{ID: id, Service: service, Port: 8000 + int(id[0])}, // an instance keeps its port
		})
	}
	return out, &api.QueryMeta{LastIndex: st.index}, nil
}

func TestLoopFollowsTheIndexAndResetsIt(t *testing.T) {
	down := errors.New("connection refused")
	steps := []struct {
		step
		want string // what a watcher sees after this answer; "" for no change
	}{
		{step{index: 10, ids: []string{"a", "b"}}, "2"},
		{step{index: 12, ids: []string{"a", "b", "c"}}, "3"},
		{step{index: 7, ids: []string{"a", "b", "c", "d"}}, "4"}, // went backwards: served, then start over
		{step{index: 9, ids: []string{"a", "b", "c", "d"}}, ""},
		{step{err: down}, "4 stale"},                             // an error also starts over
		{step{index: 0, ids: []string{"a", "b", "c", "d"}}, "4"}, // never wait on index 0
		{step{index: 11, ids: []string{"a"}}, "4 preserved"},     // a drop of 75%: held, re-read at once
		{step{index: 11, ids: []string{"a"}}, "1"},               // confirmed
	}
	s := &script{gate: make(chan struct{}), asked: make(chan uint64, 100)}
	for _, st := range steps {
		s.steps = append(s.steps, st.step)
	}
	wants := make([]string, len(steps))
	for i, st := range steps {
		wants[i] = st.want
	}
	// A restart grace of 1ns is over by the next answer: the drop is
	// judged as usual (TestLoopHoldsTheSetAfterARestart plays the grace).
	play(t, s, WatcherConfig{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		SelfPreservation: discovery.SelfPreservation{ConfirmAfter: time.Millisecond, RestartGrace: time.Nanosecond}}, wants,
		func(i int, snap discovery.Snapshot) string {
			got := strconv.Itoa(len(snap.Instances))
			switch {
			case snap.Stale:
				got += " stale"
				if !errors.Is(snap.Err, down) {
					t.Errorf("answer %d: stale snapshot without the error: %+v", i, snap)
				}
			case snap.Preserved:
				got += " preserved"
			}
			return got
		})
	want := []uint64{0, 10, 12, 0, 9, 0, 1, 0, 11}
	for i, idx := range want {
		if got := <-s.asked; got != idx {
			t.Fatalf("query %d used WaitIndex %d, want %d (want all: %v)", i, got, idx, want)
		}
	}
}

// After an agent restart — an error, then an answer with a lower index —
// the watcher holds the last good set until every instance is back, and
// meanwhile blocks on the index with a wait bounded by the grace.
func TestLoopHoldsTheSetAfterARestart(t *testing.T) {
	down := errors.New("connection refused")
	steps := []struct {
		step
		want string
	}{
		{step{index: 40, ids: []string{"a", "b"}}, "a,b"},
		{step{err: down}, "a,b stale"},
		{step{index: 3, ids: nil}, "a,b preserved"},                  // the restarted agent is empty
		{step{index: 4, ids: []string{"b"}}, ""},                     // b is back, a is not yet: no change to see
		{step{index: 6, ids: []string{"b", "c"}}, "a,b,c preserved"}, // a new instance is served at once
		{step{index: 7, ids: []string{"a", "b", "c"}}, "a,b,c"},      // all back: fresh
	}
	s := &script{gate: make(chan struct{}), asked: make(chan uint64, 100), waits: make(chan time.Duration, 100)}
	for _, st := range steps {
		s.steps = append(s.steps, st.step)
	}
	const grace = 30 * time.Second // shorter than WaitTime
	wants := make([]string, len(steps))
	for i, st := range steps {
		wants[i] = st.want
	}
	play(t, s, WatcherConfig{Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		SelfPreservation: discovery.SelfPreservation{RestartGrace: grace}}, wants,
		func(_ int, snap discovery.Snapshot) string {
			var ids []string
			for _, in := range snap.Instances {
				ids = append(ids, in.ID)
			}
			got := strings.Join(ids, ",")
			switch {
			case snap.Stale:
				got += " stale"
			case snap.Preserved:
				got += " preserved"
			}
			return got
		})
	// From 0 after the error and after the reset; then blocking on the
	// index, within the grace, until all are back.
	want := []uint64{0, 40, 0, 0, 4, 6, 7}
	for i, idx := range want {
		got, wait := <-s.asked, <-s.waits
		if got != idx {
			t.Fatalf("query %d used WaitIndex %d, want %d (want all: %v)", i, got, idx, want)
		}
		bounded := i >= 3 && i <= 5
		if bounded && (wait > grace || wait < grace/2) || !bounded && wait != DefaultWaitTime {
			t.Errorf("query %d waited up to %v; want the grace left (bounded %v) or WaitTime", i, wait, bounded)
		}
	}
}

func TestRegistrarConfigNamesTheBadField(t *testing.T) {
	cl, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg   RegistrarConfig
		field string
	}{
		{RegistrarConfig{ReconcileInterval: -1}, "RegistrarConfig.ReconcileInterval"},
		{RegistrarConfig{Backoff: -1}, "RegistrarConfig.Backoff"},
		{RegistrarConfig{Backoff: time.Second, MaxBackoff: time.Millisecond}, "RegistrarConfig.MaxBackoff"},
		{RegistrarConfig{DeregisterTimeout: -1}, "RegistrarConfig.DeregisterTimeout"},
	} {
		_, err := NewRegistrar(cl, tc.cfg)
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("NewRegistrar(%+v) = %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.field)
		}
	}
	r, err := NewRegistrar(cl, RegistrarConfig{Backoff: 3 * time.Second})
	if err != nil || r.cfg.MaxBackoff != 3*time.Second || r.cfg.ReconcileInterval != DefaultReconcileInterval {
		t.Errorf("Backoff above the default MaxBackoff: %v, %+v; want MaxBackoff to follow it", err, r.cfg)
	}
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	w, err := newWatcher(nil, WatcherConfig{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for n, limit := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		limit *= time.Millisecond
		for range 50 {
			if d := w.backoff().Delay(n + 1); d < limit/2 || d > limit {
				t.Fatalf("backoff after %d failures = %v, want in [%v, %v]", n+1, d, limit/2, limit)
			}
		}
	}
}

func TestWatcherConfigNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		cfg   WatcherConfig
		field string
	}{
		{WatcherConfig{WaitTime: -1}, "WatcherConfig.WaitTime"},
		{WatcherConfig{WaitTime: 11 * time.Minute}, "WatcherConfig.WaitTime"},
		{WatcherConfig{Backoff: -1}, "WatcherConfig.Backoff"},
		{WatcherConfig{Backoff: time.Second, MaxBackoff: time.Millisecond}, "WatcherConfig.MaxBackoff"},
		{WatcherConfig{SelfPreservation: discovery.SelfPreservation{MaxDrop: 1.5}}, "WatcherConfig.SelfPreservation.MaxDrop"},
		{WatcherConfig{SelfPreservation: discovery.SelfPreservation{RestartGrace: -1}}, "WatcherConfig.SelfPreservation.RestartGrace"},
	} {
		_, err := newWatcher(nil, tc.cfg)
		var fe *discovery.FieldError
		if !errors.Is(err, discovery.ErrInvalidConfig) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("newWatcher(%+v) = %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.field)
		}
	}
	if _, err := newWatcher(nil, WatcherConfig{Backoff: 10 * time.Second}); err != nil {
		t.Errorf("Backoff above the default MaxBackoff: %v; want MaxBackoff to follow it", err)
	}
}

// The agent does not report DeregisterCriticalServiceAfter back, and its
// reaper needs minutes: check what is sent instead.
func TestAgentRegistrationCarriesTheCheck(t *testing.T) {
	reg, err := discovery.Registration{
		Instance: discovery.Instance{Service: "s", Address: "10.0.0.1", Port: 80, Tags: []string{"t"}, Meta: map[string]string{"zone": "a"}},
		Check:    &discovery.Check{GRPC: "10.0.0.1:80/s", GRPCUseTLS: true, Interval: time.Second, Timeout: 2 * time.Second, DeregisterCriticalAfter: 90 * time.Second},
	}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	def := agentRegistration(reg)
	c := def.Check
	if def.ID != "s-10.0.0.1-80" || def.Tags[0] != "t" || def.Meta["zone"] != "a" || c == nil ||
		c.GRPC != "10.0.0.1:80/s" || !c.GRPCUseTLS || c.Interval != "1s" || c.Timeout != "2s" ||
		c.DeregisterCriticalServiceAfter != "1m30s" || c.CheckID != "service:s-10.0.0.1-80" {
		t.Fatalf("agent registration = %+v, check %+v", def, c)
	}
}

// play runs a watcher with cfg over the script s, lets one scripted answer
// through per entry of wants, and after each entry that is not empty
// compares the next snapshot, as describe renders it, with that entry.
func play(t *testing.T, s *script, cfg WatcherConfig, wants []string, describe func(i int, snap discovery.Snapshot) string) {
	t.Helper()
	w, err := newWatcher(s.health, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wa, err := w.Watch(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, want := range wants {
		s.gate <- struct{}{}
		if want == "" {
			continue
		}
		snap, err := wa.Next(ctx)
		if err != nil {
			t.Fatalf("answer %d: Next: %v", i, err)
		}
		if got := describe(i, snap); got != want {
			t.Fatalf("answer %d: watcher saw %q, want %q", i, got, want)
		}
	}
}

// TestLeaderCheckMarksEveryWatchStale: while the leader check finds no
// leader, every watch serves its set marked stale with a *NoLeaderError,
// though no query returns; once there is a leader again, the sets are
// fresh again. A check that gets no answer changes nothing.
func TestLeaderCheckMarksEveryWatchStale(t *testing.T) {
	// Each service has one instance; a blocking query never returns.
	health := func(ctx context.Context, service string, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		if q.WaitIndex != 0 {
			<-ctx.Done()
			return nil, nil, ctx.Err()
		}
		return []*api.ServiceEntry{{Node: &api.Node{Address: "10.0.0.1"}, Service: &api.AgentService{ID: service + "-1", Service: service, Port: 8000}}},
			&api.QueryMeta{LastIndex: 5}, nil
	}
	w, err := newWatcher(health, WatcherConfig{LeaderCheck: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var state atomic.Int32 // 0: a leader, 1: none, 2: no answer
	w.leader = func(context.Context) (*NoLeaderError, bool) {
		switch state.Load() {
		case 1:
			return &NoLeaderError{LastContact: 3 * time.Second}, true
		case 2:
			return nil, false
		}
		return nil, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var watches []discovery.Watch
	for _, svc := range []string{"orders", "billing"} {
		wa, err := w.Watch(ctx, svc)
		if err != nil {
			t.Fatal(err)
		}
		defer wa.Close()
		watches = append(watches, wa)
	}
	next := func(wa discovery.Watch, stale bool) {
		t.Helper()
		for {
			snap, err := wa.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Stale != stale || len(snap.Instances) != 1 {
				continue // an earlier state
			}
			var nl *NoLeaderError
			if stale && (!errors.Is(snap.Err, ErrNoLeader) || !errors.As(snap.Err, &nl) || nl.LastContact != 3*time.Second) {
				t.Fatalf("stale snapshot without the leader error: %+v", snap)
			}
			return
		}
	}
	for _, wa := range watches {
		next(wa, false)
	}
	state.Store(1)
	for _, wa := range watches {
		next(wa, true)
	}
	state.Store(2)
	state.Store(0)
	for _, wa := range watches {
		next(wa, false)
	}
}
