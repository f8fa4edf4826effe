package consul_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func register(t testing.TB, r discovery.Registrar, reg discovery.Registration) discovery.Registered {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := r.Register(ctx, reg)
	if err != nil {
		t.Fatalf("Register(%+v): %v", reg.Instance, err)
	}
	return h
}

func TestRegisterWatchDeregister(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, _ := client(t, agent)
	reg, w := newRegistrar(t, cl), newWatcher(t, cl, consul.WatcherConfig{})
	orders := watch(t, w, "orders")

	a := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "orders-a", Service: "orders", Address: "127.0.0.1", Port: 9001,
			Tags: []string{"grpc"}, Meta: map[string]string{discovery.MetaVersion: "1.2.0", discovery.MetaZone: "eu-1a"}},
		Check: &discovery.Check{TTL: 2 * time.Second, DeregisterCriticalAfter: 90 * time.Second},
	})
	b := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "orders-b", Service: "orders", Address: "127.0.0.2", Port: 9001},
		Check:    &discovery.Check{TTL: 2 * time.Second},
	})
	s := waitFor(t, orders, 10*time.Second, "both instances", func(s discovery.Snapshot) bool {
		return has(s, "orders-a") && has(s, "orders-b")
	})
	if got := s.Instances[0]; got.Endpoint() != "127.0.0.1:9001" || !got.HasTag("grpc") || got.Meta[discovery.MetaZone] != "eu-1a" {
		t.Fatalf("watched instance = %+v, want the registered endpoint, tags and metadata", got)
	}
	if s.Stale || s.LastConfirmed.IsZero() {
		t.Fatalf("snapshot = %+v, want fresh and confirmed", s)
	}

	deregister(t, b)
	// Deregister returns once the health endpoint no longer lists it.
	entries, _, err := cl.Health().Service("orders", "", true, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("after Deregister the health endpoint lists %d instances (err %v), want 1", len(entries), err)
	}
	waitFor(t, orders, 10*time.Second, "orders-b gone", func(s discovery.Snapshot) bool {
		return !has(s, "orders-b") && has(s, "orders-a")
	})

	// The last instance leaving empties the set: self-preservation holds it
	// until a second read confirms.
	deregister(t, a)
	waitFor(t, orders, 10*time.Second, "empty set", func(s discovery.Snapshot) bool {
		return fresh(s) && len(s.Instances) == 0
	})
}

func TestFilterByTagAndMetaSharesOneQuery(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, _ := client(t, agent)
	wcl, queries := client(t, agent)
	reg, w := newRegistrar(t, cl), newWatcher(t, wcl, consul.WatcherConfig{})
	for i, in := range []discovery.Instance{
		{ID: "a", Tags: []string{"grpc"}, Meta: map[string]string{"version": "1"}},
		{ID: "b", Tags: []string{"grpc"}, Meta: map[string]string{"version": "2", "canary": "true"}},
		{ID: "c", Tags: []string{"http"}, Meta: map[string]string{"version": "2"}},
	} {
		in.Service, in.Address, in.Port = "pay", "127.0.0.1", 9000+i
		h := register(t, reg, discovery.Registration{Instance: in})
		t.Cleanup(func() { deregister(t, h) })
	}
	// Let the agent sync all three to the catalog, so that the index stays.
	vitamintest.Eventually(t, 10*time.Second, func() error {
		entries, _, err := cl.Health().Service("pay", "", true, nil)
		if err == nil && len(entries) != 3 {
			err = errors.New(strconv.Itoa(len(entries)) + " instances in the catalog")
		}
		return err
	})
	tests := []struct {
		opts []discovery.WatchOption
		want string
	}{
		{nil, "a,b,c"},
		{[]discovery.WatchOption{discovery.WithTags("grpc")}, "a,b"},
		{[]discovery.WatchOption{discovery.WithMeta("version", "2")}, "b,c"},
		{[]discovery.WatchOption{discovery.WithTags("grpc"), discovery.WithMeta("canary", "true")}, "b"},
	}
	for _, tt := range tests {
		wa := watch(t, w, "pay", tt.opts...)
		waitFor(t, wa, 10*time.Second, tt.want, func(s discovery.Snapshot) bool {
			var ids []string
			for _, i := range s.Instances {
				ids = append(ids, i.ID)
			}
			return strings.Join(ids, ",") == tt.want
		})
	}
	if n := queries.count("GET /v1/health/service/pay"); n > 2 {
		t.Fatalf("four filtered watches made %d health queries, want them to share one loop", n)
	}
}

func TestFailingChecksRemoveTheInstance(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	wcl, _ := client(t, agent)
	w := newWatcher(t, wcl, consul.WatcherConfig{})

	t.Run("TTL not renewed", func(t *testing.T) {
		cl, tr := client(t, agent)
		h := register(t, newRegistrar(t, cl), discovery.Registration{
			Instance: discovery.Instance{ID: "ttl-1", Service: "ttl", Address: "127.0.0.1", Port: 9100},
			Check:    &discovery.Check{TTL: 500 * time.Millisecond},
		})
		wa := watch(t, w, "ttl")
		waitFor(t, wa, 10*time.Second, "passing", func(s discovery.Snapshot) bool { return has(s, "ttl-1") })
		// The process can no longer renew its check (hung, cut off).
		tr.setFail(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/agent/check/update/") })
		waitFor(t, wa, 10*time.Second, "critical", func(s discovery.Snapshot) bool { return fresh(s) && !has(s, "ttl-1") })
		tr.setFail(nil)
		waitFor(t, wa, 10*time.Second, "renewed", func(s discovery.Snapshot) bool { return has(s, "ttl-1") })
		deregister(t, h)
	})

	t.Run("HTTP answers 500", func(t *testing.T) {
		var status atomic.Int32
		status.Store(http.StatusOK)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(int(status.Load()))
		}))
		defer srv.Close()
		cl, _ := client(t, agent)
		h := register(t, newRegistrar(t, cl), discovery.Registration{
			Instance: discovery.Instance{ID: "http-1", Service: "web", Address: "127.0.0.1", Port: 9200},
			Check:    &discovery.Check{HTTP: srv.URL + "/health", Interval: 100 * time.Millisecond, Timeout: time.Second},
		})
		wa := watch(t, w, "web")
		waitFor(t, wa, 10*time.Second, "passing", func(s discovery.Snapshot) bool { return has(s, "http-1") })
		status.Store(http.StatusInternalServerError)
		waitFor(t, wa, 10*time.Second, "critical", func(s discovery.Snapshot) bool { return fresh(s) && !has(s, "http-1") })
		status.Store(http.StatusOK)
		waitFor(t, wa, 10*time.Second, "passing again", func(s discovery.Snapshot) bool { return has(s, "http-1") })
		deregister(t, h)
	})

	t.Run("gRPC NOT_SERVING", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := health.NewServer()
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		go func() { _ = gs.Serve(lis) }()
		defer gs.Stop()
		hs.SetServingStatus("stock", healthpb.HealthCheckResponse_SERVING)
		port := lis.Addr().(*net.TCPAddr).Port

		cl, _ := client(t, agent)
		h := register(t, newRegistrar(t, cl), discovery.Registration{
			Instance: discovery.Instance{ID: "grpc-1", Service: "stock", Address: "127.0.0.1", Port: port},
			Check:    &discovery.Check{GRPC: lis.Addr().String() + "/stock", Interval: 100 * time.Millisecond, Timeout: time.Second},
		})
		wa := watch(t, w, "stock")
		waitFor(t, wa, 10*time.Second, "serving", func(s discovery.Snapshot) bool { return has(s, "grpc-1") })
		hs.SetServingStatus("stock", healthpb.HealthCheckResponse_NOT_SERVING)
		waitFor(t, wa, 10*time.Second, "not serving", func(s discovery.Snapshot) bool { return fresh(s) && !has(s, "grpc-1") })
		hs.SetServingStatus("stock", healthpb.HealthCheckResponse_SERVING)
		waitFor(t, wa, 10*time.Second, "serving again", func(s discovery.Snapshot) bool { return has(s, "grpc-1") })
		deregister(t, h)
	})
}

func TestAgentRestartRegistersAgainOnce(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, tr := client(t, agent)
	reg := newRegistrar(t, cl)
	ttl := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "cart-ttl", Service: "cart", Address: "127.0.0.1", Port: 9300},
		Check:    &discovery.Check{TTL: time.Second, HeartbeatInterval: 100 * time.Millisecond},
	})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	probed := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "cart-http", Service: "cart", Address: "127.0.0.1", Port: 9301},
		Check:    &discovery.Check{HTTP: srv.URL, Interval: 100 * time.Millisecond},
	})
	const registerPath = "ok PUT /v1/agent/service/register"
	if n := tr.count(registerPath); n != 2 {
		t.Fatalf("%d registrations before the restart, want 2", n)
	}

	agent.Restart(t) // a dev agent comes back empty

	vitamintest.Eventually(t, 15*time.Second, func() error {
		entries, _, err := agent.Client.Health().Service("cart", "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 2 {
			return errors.New(strconv.Itoa(len(entries)) + " passing instances of cart, want 2")
		}
		return nil
	})
	if n := tr.count(registerPath); n != 4 {
		t.Fatalf("%d registrations after the restart, want 4 (each instance once again)", n)
	}
	// Several more heartbeats and reconciliations pass: no further
	// registration, no duplicate.
	renewed, checked := tr.count("ok PUT /v1/agent/check/update/"), tr.count("ok GET /v1/agent/service/cart-http")
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if tr.count("ok PUT /v1/agent/check/update/") < renewed+3 || tr.count("ok GET /v1/agent/service/cart-http") < checked+3 {
			return errors.New("waiting for three more heartbeats and reconciliations")
		}
		return nil
	})
	if n := tr.count(registerPath); n != 4 {
		t.Fatalf("%d registrations, want still 4", n)
	}
	services, _, err := agent.Client.Catalog().Service("cart", "", nil)
	if err != nil || len(services) != 2 {
		t.Fatalf("catalog lists %d instances of cart (err %v), want 2", len(services), err)
	}
	deregister(t, ttl)
	deregister(t, probed)
}

func TestStaleWhileAgentStopped(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, _ := client(t, agent)
	reg, w := newRegistrar(t, cl), newWatcher(t, cl, consul.WatcherConfig{})
	h := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "inv-1", Service: "inventory", Address: "127.0.0.1", Port: 9400},
		Check:    &discovery.Check{TTL: 2 * time.Second, HeartbeatInterval: 100 * time.Millisecond},
	})
	wa := watch(t, w, "inventory")
	before := waitFor(t, wa, 10*time.Second, "registered", func(s discovery.Snapshot) bool { return has(s, "inv-1") && fresh(s) })

	agent.Stop()
	s := waitFor(t, wa, 10*time.Second, "stale", func(s discovery.Snapshot) bool { return s.Stale })
	if !has(s, "inv-1") || s.Err == nil || s.LastConfirmed.Before(before.LastConfirmed) || s.LastConfirmed.IsZero() {
		t.Fatalf("stale snapshot = %+v, want the last set, the error and when it was last confirmed", s)
	}
	// A second watch opened while the agent is down gets the stale set at once.
	if s2 := waitFor(t, watch(t, w, "inventory"), 10*time.Second, "stale", func(discovery.Snapshot) bool { return true }); !s2.Stale || !has(s2, "inv-1") {
		t.Fatalf("new watch while the agent is down: %+v, want the last set, stale", s2)
	}

	agent.Restart(t)
	s = waitFor(t, wa, 15*time.Second, "fresh again", func(s discovery.Snapshot) bool { return fresh(s) && has(s, "inv-1") })
	if s.Err != nil || !s.LastConfirmed.After(before.LastConfirmed) {
		t.Fatalf("after the restart: %+v, want no error and a newer confirmation", s)
	}
	deregister(t, h)
}

func TestRegisterRejectsBadInput(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, _ := client(t, agent)
	reg := newRegistrar(t, cl)
	ok := discovery.Instance{ID: "dup", Service: "s", Address: "127.0.0.1", Port: 9500}
	h := register(t, reg, discovery.Registration{Instance: ok})
	defer deregister(t, h)

	tests := []struct {
		name  string
		in    discovery.Instance
		check *discovery.Check
		field string
	}{
		{"empty service name", discovery.Instance{Address: "127.0.0.1", Port: 1}, nil, "Instance.Service"},
		{"port out of range", discovery.Instance{Service: "s", Address: "127.0.0.1", Port: 65536}, nil, "Instance.Port"},
		{"malformed check", ok, &discovery.Check{HTTP: "localhost:8080/health"}, "Check.HTTP"},
		{"reserved meta key", discovery.Instance{Service: "s", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"consul-x": "1"}}, nil, "Instance.Meta[consul-x]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reg.Register(context.Background(), discovery.Registration{Instance: tt.in, Check: tt.check})
			var fe *discovery.FieldError
			if !errors.Is(err, discovery.ErrInvalidRegistration) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Register = %v, want an invalid registration naming %s", err, tt.field)
			}
		})
	}
	t.Run("duplicate ID with a different address", func(t *testing.T) {
		dup := ok
		dup.Address = "127.0.0.9"
		_, err := reg.Register(context.Background(), discovery.Registration{Instance: dup})
		var de *discovery.DuplicateError
		if !errors.Is(err, discovery.ErrDuplicateInstance) || !errors.As(err, &de) || de.Existing != "127.0.0.1:9500" {
			t.Fatalf("Register = %v, want a DuplicateError naming the existing endpoint", err)
		}
		svc, _, err := cl.Agent().Service("dup", nil)
		if err != nil || svc.Address != "127.0.0.1" {
			t.Fatalf("the registered instance changed: %+v, %v", svc, err)
		}
	})
}

// TestManyWatchersShareOneQuery registers 1,000 instances of a service and
// opens 100 watches of it: the watcher must run one blocking query loop.
func TestManyWatchersShareOneQuery(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	const instances, watchers = 1000, 100
	registerMany(t, agent.Client, "catalog", instances)

	cl, queries := client(t, agent)
	w := newWatcher(t, cl, consul.WatcherConfig{})
	ws := make([]discovery.Watch, watchers)
	for i := range ws {
		ws[i] = watch(t, w, "catalog")
	}
	seeAll := func(n int) {
		t.Helper()
		for _, wa := range ws {
			waitFor(t, wa, 30*time.Second, strconv.Itoa(n)+" instances", func(s discovery.Snapshot) bool { return len(s.Instances) == n })
		}
	}
	seeAll(instances)
	const path = "GET /v1/health/service/catalog"
	start := queries.count(path)
	if start > 3 {
		t.Fatalf("%d watches made %d health queries to get started, want one loop", watchers, start)
	}
	const changes = 5
	for i := range changes {
		if err := agent.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "catalog-new-" + strconv.Itoa(i), Name: "catalog", Address: "127.0.0.1", Port: 20000 + i,
		}); err != nil {
			t.Fatal(err)
		}
		seeAll(instances + i + 1)
	}
	// One blocking query answered per change, plus at most one spare per
	// change when the index moves twice (agent sync); 100 watchers would
	// make hundreds.
	if n := queries.count(path) - start; n > 2*changes+2 {
		t.Fatalf("%d changes seen by %d watchers took %d health queries, want about one per change", changes, watchers, n)
	}
	t.Logf("%d watchers, %d instances: %d health queries in all", watchers, instances+changes, queries.count(path))
}

// registerMany registers n instances of service through the agent, a few
// at a time.
func registerMany(t testing.TB, cl *api.Client, service string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- cl.Agent().ServiceRegisterOpts(&api.AgentServiceRegistration{
				ID: service + "-" + strconv.Itoa(i), Name: service, Address: "10.1." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250+1), Port: 8080,
				Tags: []string{"v1"}, Meta: map[string]string{"zone": "z" + strconv.Itoa(i%3)},
			}, api.ServiceRegisterOpts{}.WithContext(ctx))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("register %s: %v", service, err)
		}
	}
}

func TestRegisteringAgainSupersedes(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, tr := client(t, agent)
	reg := newRegistrar(t, cl)
	in := discovery.Instance{ID: "again", Service: "s", Address: "127.0.0.1", Port: 9600, Tags: []string{"v1"}}
	first := register(t, reg, discovery.Registration{Instance: in, Check: &discovery.Check{TTL: time.Second, HeartbeatInterval: 50 * time.Millisecond}})
	in.Tags = []string{"v2"}
	second := register(t, reg, discovery.Registration{Instance: in, Check: &discovery.Check{TTL: time.Second, HeartbeatInterval: 50 * time.Millisecond}})
	deregister(t, first) // superseded: does nothing
	svc, _, err := cl.Agent().Service("again", nil)
	if err != nil || len(svc.Tags) != 1 || svc.Tags[0] != "v2" {
		t.Fatalf("after the superseded Deregister: %+v, %v; want the second registration", svc, err)
	}
	n := tr.count("ok PUT /v1/agent/check/update/")
	vitamintest.Eventually(t, 5*time.Second, func() error {
		if tr.count("ok PUT /v1/agent/check/update/") < n+2 {
			return errors.New("waiting for heartbeats")
		}
		return nil
	})
	deregister(t, second)
	if _, _, err := cl.Agent().Service("again", nil); err == nil {
		t.Fatal("the instance is still registered after Deregister")
	}
}
