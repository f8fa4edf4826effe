package discovery_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func inst(id string, port int, tags ...string) discovery.Instance {
	return discovery.Instance{ID: id, Service: "orders", Address: "10.0.0.1", Port: port, Tags: tags}
}

func TestNormalizeNamesTheBadField(t *testing.T) {
	ok := discovery.Instance{Service: "orders", Address: "10.0.0.1", Port: 8080}
	with := func(f func(*discovery.Registration)) discovery.Registration {
		r := discovery.Registration{Instance: ok.Clone()}
		f(&r)
		return r
	}
	tests := []struct {
		name  string
		reg   discovery.Registration
		field string
	}{
		{"empty service", with(func(r *discovery.Registration) { r.Instance.Service = "" }), "Instance.Service"},
		{"empty address", with(func(r *discovery.Registration) { r.Instance.Address = " " }), "Instance.Address"},
		{"port zero", with(func(r *discovery.Registration) { r.Instance.Port = 0 }), "Instance.Port"},
		{"port too big", with(func(r *discovery.Registration) { r.Instance.Port = 70000 }), "Instance.Port"},
		{"empty tag", with(func(r *discovery.Registration) { r.Instance.Tags = []string{"a", ""} }), "Instance.Tags[1]"},
		{"two check kinds", with(func(r *discovery.Registration) {
			r.Check = &discovery.Check{TTL: time.Second, HTTP: "http://x/health"}
		}), "Check"},
		{"no check kind", with(func(r *discovery.Registration) { r.Check = &discovery.Check{Interval: time.Second} }), "Check"},
		{"relative http check", with(func(r *discovery.Registration) { r.Check = &discovery.Check{HTTP: "/health"} }), "Check.HTTP"},
		{"grpc check without port", with(func(r *discovery.Registration) { r.Check = &discovery.Check{GRPC: "localhost"} }), "Check.GRPC"},
		{"negative interval", with(func(r *discovery.Registration) {
			r.Check = &discovery.Check{GRPC: "localhost:1", Interval: -time.Second}
		}), "Check.Interval"},
		{"heartbeat not shorter than ttl", with(func(r *discovery.Registration) {
			r.Check = &discovery.Check{TTL: time.Second, HeartbeatInterval: time.Second}
		}), "Check.HeartbeatInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.reg.Normalize()
			if !errors.Is(err, discovery.ErrInvalidRegistration) {
				t.Fatalf("Normalize() = %v, want ErrInvalidRegistration", err)
			}
			var fe *discovery.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Normalize() = %v, want a FieldError for %s", err, tt.field)
			}
		})
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	r, err := discovery.Registration{
		Instance: discovery.Instance{Service: "orders", Address: "10.0.0.1", Port: 8080},
		Check:    &discovery.Check{TTL: 3 * time.Second},
	}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if r.Instance.ID != "orders-10.0.0.1-8080" || r.Check.HeartbeatInterval != time.Second {
		t.Fatalf("defaults not filled: ID %q, heartbeat %v", r.Instance.ID, r.Check.HeartbeatInterval)
	}
}

func TestGuard(t *testing.T) {
	four := []discovery.Instance{inst("a", 1), inst("b", 2), inst("c", 3), inst("d", 4)}
	g, err := discovery.NewGuard(discovery.SelfPreservation{MaxDrop: 0.5, ConfirmReads: 2})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		answer []discovery.Instance
		serve  int
		held   bool
	}{
		{four, 4, false},
		{four[:2], 2, false}, // a drop of exactly half is allowed
		{four, 4, false},
		{nil, 4, true},       // empty: held
		{four[:1], 4, true},  // still suspicious, second read
		{nil, 0, false},      // third read confirms
		{four[:1], 1, false}, // growth is always served
	}
	for i, s := range steps {
		v := g.Observe(s.answer)
		if len(v.Serve) != s.serve || v.Held != s.held {
			t.Fatalf("step %d: served %d held %v, want %d held %v", i, len(v.Serve), v.Held, s.serve, s.held)
		}
	}
	if _, err := discovery.NewGuard(discovery.SelfPreservation{MaxDrop: 2}); !errors.Is(err, discovery.ErrInvalidConfig) {
		t.Fatalf("MaxDrop 2: err = %v, want ErrInvalidConfig", err)
	}
}

func TestGuardRestartGrace(t *testing.T) {
	three := []discovery.Instance{inst("a", 1), inst("b", 2), inst("c", 3)}
	ids := func(in []discovery.Instance) string {
		var s []string
		for _, i := range in {
			s = append(s, i.ID)
		}
		return strings.Join(s, ",")
	}
	g, err := discovery.NewGuard(discovery.SelfPreservation{RestartGrace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g.Restarted() // no good set yet: nothing to hold
	if v := g.Observe(three[:1]); v.Held {
		t.Fatalf("first answer held: %+v", v)
	}
	g.Observe(three)
	g.Restarted()
	steps := []struct {
		answer   []discovery.Instance
		serve    string
		held     bool
		restored bool
	}{
		{nil, "a,b,c", true, false},                                         // the backend came back empty
		{[]discovery.Instance{inst("d", 4)}, "a,b,c,d", true, false},        // a new instance is served with the old ones
		{three[1:], "a,b,c", true, false},                                   // a drop of one of three: held too during the grace
		{append(three[:2:2], inst("d", 4)), "a,b,c,d", true, false},         // c still missing
		{append(slices.Clone(three), inst("d", 4)), "a,b,c,d", false, true}, // all back: served as is
		{three[1:], "a,b,c,d", true, false},                                 // and a drop is still held during the grace (checks reset critical)
		{append(slices.Clone(three), inst("d", 4)), "a,b,c,d", false, true}, // back again
	}
	for i, s := range steps {
		v := g.Observe(s.answer)
		if ids(v.Serve) != s.serve || v.Held != s.held || v.Restored != s.restored || (v.Grace > 0) != s.held {
			t.Fatalf("step %d: %+v; want serve %s held %v restored %v", i, v, s.serve, s.held, s.restored)
		}
		if good, _ := g.Good(); ids(good) != s.serve {
			t.Fatalf("step %d: Good() = %s, want what was served, %s", i, ids(good), s.serve)
		}
	}

	// When the grace runs out, answers are judged as usual: an empty set
	// still needs its confirming read.
	g, _ = discovery.NewGuard(discovery.SelfPreservation{RestartGrace: time.Millisecond})
	g.Observe(three)
	g.Restarted()
	v := g.Observe(nil)
	for v.Grace > 0 {
		v = g.Observe(nil)
	}
	if !v.Held || ids(v.Serve) != "a,b,c" {
		t.Fatalf("first answer after the grace: %+v, want held for its confirmation", v)
	}
	if v = g.Observe(nil); v.Held || !v.Confirmed || len(v.Serve) != 0 {
		t.Fatalf("second answer after the grace: %+v, want the empty set confirmed", v)
	}

	// Disabled: no grace either.
	g, _ = discovery.NewGuard(discovery.SelfPreservation{Disabled: true})
	g.Observe(three)
	g.Restarted()
	if v := g.Observe(nil); v.Held || len(v.Serve) != 0 {
		t.Fatalf("disabled guard held: %+v", v)
	}
}

func TestInvalidSettingsAndInputNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		sentinel error
		field    string
	}{
		{"guard", func() error {
			_, err := discovery.NewGuard(discovery.SelfPreservation{ConfirmReads: -1})
			return err
		}(), discovery.ErrInvalidConfig, "SelfPreservation.ConfirmReads"},
		{"grace", func() error {
			_, err := discovery.NewGuard(discovery.SelfPreservation{RestartGrace: -time.Second})
			return err
		}(), discovery.ErrInvalidConfig, "SelfPreservation.RestartGrace"},
		{"registry", func() error {
			_, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{SelfPreservation: discovery.SelfPreservation{MaxDrop: 2}})
			return err
		}(), discovery.ErrInvalidConfig, "MemoryConfig.SelfPreservation.MaxDrop"},
		{"watch", func() error {
			_, err := newRegistry(t, vitamintest.RegistryConfig{}).Watch(context.Background(), "")
			return err
		}(), discovery.ErrInvalidRegistration, "service"},
	} {
		var fe *discovery.FieldError
		if !errors.Is(tc.err, tc.sentinel) || !errors.As(tc.err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a FieldError for %s matching %v", tc.name, tc.err, tc.field, tc.sentinel)
		}
	}
}

func newRegistry(t *testing.T, cfg vitamintest.RegistryConfig) *vitamintest.Registry {
	t.Helper()
	r, err := vitamintest.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func next(t *testing.T, w discovery.Watch) discovery.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return s
}

func ids(s discovery.Snapshot) []string {
	out := []string{}
	for _, i := range s.Instances {
		out = append(out, i.ID)
	}
	return out
}

func TestRegistryRegisterWatchDeregister(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, vitamintest.RegistryConfig{})
	w, err := r.Watch(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if s := next(t, w); len(s.Instances) != 0 || s.Stale {
		t.Fatalf("first snapshot = %+v, want empty and fresh", s)
	}
	a, err := r.Register(ctx, discovery.Registration{Instance: inst("a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Register(ctx, discovery.Registration{Instance: inst("b", 2)})
	if err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, []string{"a", "b"})
	if err := b.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	nextUntil(t, w, []string{"a"})
	// The last instance going away empties the set: held, then confirmed.
	if err := a.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	s := next(t, w)
	if !s.Preserved || cmp.Diff([]string{"a"}, ids(s)) != "" {
		t.Fatalf("after emptying: %+v, want the last good set, preserved", s)
	}
	s = next(t, w)
	if s.Preserved || len(s.Instances) != 0 {
		t.Fatalf("after confirmation: %+v, want empty", s)
	}
}

// nextUntil reads snapshots until the instance IDs are want.
func nextUntil(t *testing.T, w discovery.Watch, want []string) {
	t.Helper()
	for {
		s := next(t, w)
		if cmp.Diff(want, ids(s)) == "" {
			return
		}
	}
}

func TestRegistryRejectsDuplicateIDAtAnotherAddress(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, vitamintest.RegistryConfig{})
	if _, err := r.Register(ctx, discovery.Registration{Instance: inst("a", 1)}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Register(ctx, discovery.Registration{Instance: inst("a", 2)})
	var de *discovery.DuplicateError
	if !errors.Is(err, discovery.ErrDuplicateInstance) || !errors.As(err, &de) || de.Existing != "10.0.0.1:1" {
		t.Fatalf("err = %v, want a DuplicateError naming 10.0.0.1:1", err)
	}
	if _, err := r.Register(ctx, discovery.Registration{Instance: inst("a", 1, "v2")}); err != nil {
		t.Fatalf("same ID, same endpoint: %v", err)
	}
	if got := r.Instances("orders"); len(got) != 1 || !got[0].HasTag("v2") {
		t.Fatalf("Instances = %+v, want one instance with the new tag", got)
	}
}

func TestRegistryFiltersByTagAndMeta(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, vitamintest.RegistryConfig{})
	canary := inst("c", 3, "grpc")
	canary.Meta = map[string]string{discovery.MetaCanary: "true"}
	for _, in := range []discovery.Instance{inst("a", 1, "grpc"), inst("b", 2, "http"), canary} {
		if _, err := r.Register(ctx, discovery.Registration{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		opts []discovery.WatchOption
		want []string
	}{
		{nil, []string{"a", "b", "c"}},
		{[]discovery.WatchOption{discovery.WithTags("grpc")}, []string{"a", "c"}},
		{[]discovery.WatchOption{discovery.WithTags("grpc"), discovery.WithMeta(discovery.MetaCanary, "true")}, []string{"c"}},
		{[]discovery.WatchOption{discovery.WithFilter(func(i discovery.Instance) bool { return i.Port == 2 })}, []string{"b"}},
	}
	for _, tt := range tests {
		w, err := r.Watch(ctx, "orders", tt.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, ids(next(t, w))); d != "" {
			t.Errorf("filtered set (-want +got):\n%s", d)
		}
		w.Close()
	}
}

func TestRegistryUnhealthyAndUnreachable(t *testing.T) {
	ctx := context.Background()
	r := newRegistry(t, vitamintest.RegistryConfig{})
	for _, in := range []discovery.Instance{inst("a", 1), inst("b", 2)} {
		if _, err := r.Register(ctx, discovery.Registration{Instance: in}); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := r.Watch(ctx, "orders")
	defer w.Close()
	nextUntil(t, w, []string{"a", "b"})
	r.SetHealthy("b", false)
	nextUntil(t, w, []string{"a"})

	down := errors.New("connection refused")
	r.SetUnreachable(down)
	s := next(t, w)
	if !s.Stale || !errors.Is(s.Err, down) || s.LastConfirmed.IsZero() || cmp.Diff([]string{"a"}, ids(s)) != "" {
		t.Fatalf("unreachable: %+v, want the last set, stale, with the error", s)
	}
	r.SetUnreachable(nil)
	if s := next(t, w); s.Stale || s.Err != nil {
		t.Fatalf("reachable again: %+v, want fresh", s)
	}
}

func TestWatchNextHonoursContextAndClose(t *testing.T) {
	r := newRegistry(t, vitamintest.RegistryConfig{})
	w, _ := r.Watch(context.Background(), "orders")
	next(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with a cancelled context = %v", err)
	}
	done := make(chan error)
	go func() {
		_, err := w.Next(context.Background())
		done <- err
	}()
	w.Close()
	if err := <-done; !errors.Is(err, discovery.ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
}
