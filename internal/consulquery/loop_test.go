package consulquery_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/consulquery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// step is one scripted answer: an index and a value, or an error.
type step struct {
	index uint64
	value string
	err   error
}

// script answers queries from a fixed sequence and records the options of
// each. It is the one fake here: a real agent does not let a test move its
// index backwards.
type script struct {
	steps []step
	asked []api.QueryOptions
	at    []time.Time
}

func (s *script) query(ctx context.Context, q *api.QueryOptions) (string, *api.QueryMeta, error) {
	if q.Context() != ctx {
		return "", nil, errors.New("the options do not carry the loop's context")
	}
	s.asked = append(s.asked, *q)
	s.at = append(s.at, time.Now())
	st := s.steps[len(s.asked)-1]
	if st.err != nil {
		return "", nil, st.err
	}
	return st.value, &api.QueryMeta{LastIndex: st.index}, nil
}

// round is what a test compares of a Round.
type round struct {
	Answer    string
	Err       bool
	Failures  int
	Recovered bool
	Changed   bool
	Reset     bool
}

func TestLoopFollowsTheIndexAndResetsIt(t *testing.T) {
	down := errors.New("connection refused")
	steps := []struct {
		step
		want round
	}{
		{step{index: 10, value: "a"}, round{Answer: "a", Changed: true}},
		{step{index: 12, value: "b"}, round{Answer: "b", Changed: true}},
		{step{index: 12, value: "b"}, round{Answer: "b"}},                                // the wait ran out
		{step{index: 7, value: "c"}, round{Answer: "c", Changed: true, Reset: true}},     // went backwards: served, then start over
		{step{index: 9, value: "c"}, round{Answer: "c", Changed: true}},                  // from 0: does not block
		{step{err: down}, round{Err: true, Failures: 1}},                                 // an error also starts over
		{step{err: down}, round{Err: true, Failures: 2}},                                 // after a backoff
		{step{index: 0, value: "d"}, round{Answer: "d", Recovered: true, Changed: true}}, // index 0: never wait on it
		{step{index: 11, value: "e"}, round{Answer: "e", Changed: true}},
		{step{err: down}, round{Err: true, Failures: 1}},
		{step{index: 3, value: "f"}, round{Answer: "f", Recovered: true, Changed: true, Reset: true}}, // lower than before the failure
	}
	s := &script{}
	for _, st := range steps {
		s.steps = append(s.steps, st.step)
	}
	var logs vitamintest.Buffer
	l := consulquery.New(consulquery.Config{
		Datacenter: "dc2", AllowStale: true, WaitTime: 3 * time.Second,
		Backoff: backoff.Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond, NoJitter: true},
		What:    "the thing", Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, s.query)

	var lastConfirmed time.Time
	for i, st := range steps {
		r, ok := l.Next(context.Background())
		if !ok {
			t.Fatalf("round %d: Next ended", i)
		}
		got := round{Answer: r.Answer, Err: r.Err != nil, Failures: r.Failures, Recovered: r.Recovered, Changed: r.Changed, Reset: r.Reset}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Fatalf("round %d (-want +got):\n%s", i, diff)
		}
		if r.Err != nil && !errors.Is(r.Err, down) {
			t.Errorf("round %d: Err = %v, want the query's error", i, r.Err)
		}
		if r.Err == nil && !r.LastConfirmed.After(lastConfirmed) {
			t.Errorf("round %d: LastConfirmed %v did not move on from %v", i, r.LastConfirmed, lastConfirmed)
		}
		if r.Err != nil && !r.LastConfirmed.Equal(lastConfirmed) {
			t.Errorf("round %d: a failure says LastConfirmed %v, want the last answer's %v", i, r.LastConfirmed, lastConfirmed)
		}
		lastConfirmed = r.LastConfirmed
	}

	var indexes []uint64
	for _, q := range s.asked {
		indexes = append(indexes, q.WaitIndex)
		if q.Datacenter != "dc2" || !q.AllowStale || q.WaitTime != 3*time.Second {
			t.Errorf("query options %+v, want dc2, AllowStale, WaitTime 3s", q)
		}
	}
	if diff := cmp.Diff([]uint64{0, 10, 12, 12, 0, 9, 0, 0, 1, 11, 0}, indexes); diff != "" {
		t.Errorf("WaitIndex of each query (-want +got):\n%s", diff)
	}
	if l.Index() != 0 {
		t.Errorf("Index() = %d after a reset, want 0", l.Index())
	}
	// The queries after the first and second failures in a row waited
	// the backoff: 20ms, then 40ms.
	for i, want := range map[int]time.Duration{6: 20 * time.Millisecond, 7: 40 * time.Millisecond} {
		if gap := s.at[i].Sub(s.at[i-1]); gap < want {
			t.Errorf("query %d came %v after the failure, want at least %v", i, gap, want)
		}
	}
	out := logs.String()
	for want, times := range map[string]int{"cannot read the thing": 2, "reading the thing again": 2, "index went backwards": 2} {
		if n := strings.Count(out, want); n != times {
			t.Errorf("log has %q %d times, want %d:\n%s", want, n, times, out)
		}
	}
}

func TestLoopStartsFromTheGivenIndex(t *testing.T) {
	s := &script{steps: []step{{index: 5, value: "a"}}}
	l := consulquery.New(consulquery.Config{StartIndex: 5}, s.query)
	r, ok := l.Next(context.Background())
	if !ok || r.Changed || s.asked[0].WaitIndex != 5 {
		t.Fatalf("first round %+v (ok %v) waited on %d; want a blocking query on 5 that reports no change", r, ok, s.asked[0].WaitIndex)
	}
}

func TestRereadStartsOverAfterThePause(t *testing.T) {
	s := &script{steps: []step{{index: 5, value: "a"}, {index: 5, value: "a"}}}
	l := consulquery.New(consulquery.Config{}, s.query)
	l.Next(context.Background())
	l.Reread(30 * time.Millisecond)
	r, ok := l.Next(context.Background())
	if !ok || !r.Changed || s.asked[1].WaitIndex != 0 {
		t.Fatalf("round after Reread %+v (ok %v) waited on %d, want a fresh read from 0", r, ok, s.asked[1].WaitIndex)
	}
	if gap := s.at[1].Sub(s.at[0]); gap < 30*time.Millisecond {
		t.Errorf("the re-read came %v after the answer, want at least 30ms", gap)
	}
}

func TestWaitAtMostBoundsOneQuery(t *testing.T) {
	s := &script{steps: []step{{index: 5, value: "a"}, {index: 5, value: "a"}, {index: 5, value: "a"}}}
	l := consulquery.New(consulquery.Config{WaitTime: time.Minute}, s.query)
	l.Next(context.Background())
	l.WaitAtMost(2 * time.Second)
	l.Next(context.Background())
	l.Next(context.Background())
	var got []time.Duration
	for _, q := range s.asked {
		got = append(got, q.WaitTime)
	}
	if diff := cmp.Diff([]time.Duration{time.Minute, 2 * time.Second, time.Minute}, got); diff != "" {
		t.Errorf("WaitTime of each query (-want +got):\n%s", diff)
	}
	if s.asked[1].WaitIndex != 5 {
		t.Errorf("the bounded query waited on %d, want a blocking query on 5", s.asked[1].WaitIndex)
	}
}

func TestNextEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &script{steps: []step{{err: errors.New("down")}}}
	l := consulquery.New(consulquery.Config{Backoff: backoff.Backoff{Initial: time.Hour, Max: time.Hour}}, s.query)
	if _, ok := l.Next(ctx); !ok {
		t.Fatal("Next ended before ctx was done")
	}
	cancel() // during the hour of backoff
	if _, ok := l.Next(ctx); ok {
		t.Fatal("Next went on after ctx was done")
	}
	if len(s.asked) != 1 {
		t.Errorf("%d queries, want 1", len(s.asked))
	}

	// A query that fails because ctx ended is not a failure to report.
	ctx, cancel = context.WithCancel(context.Background())
	l = consulquery.New(consulquery.Config{}, func(ctx context.Context, q *api.QueryOptions) (string, *api.QueryMeta, error) {
		cancel()
		return "", nil, ctx.Err()
	})
	if r, ok := l.Next(ctx); ok {
		t.Fatalf("Next = %+v after its query saw ctx end, want no round", r)
	}
}
