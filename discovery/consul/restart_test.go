package consul_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	vclient "github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// backend is one registered instance of its own service, with a real
// server on loopback that answers the clients' calls and the agent's
// probes.
type backend struct {
	service string
	kind    discovery.CheckKind
	reg     discovery.Registration
	call    func(ctx context.Context) error // one call through a Vitamin client
}

// TestAgentRestartKeepsServing restarts the Consul agent (SIGKILL, then a
// new process on the same ports, empty: a dev agent keeps no state) while
// ten services registered through one Registrar — four with HTTP checks,
// three with gRPC checks, three with TTL checks, one instance each — are
// called continuously through Vitamin clients that discover them through
// a Watcher. It wants no failed call, no watch that ever lost its
// instance, every registration restored exactly once, and every watch
// fresh again; it reports the recovery time.
func TestAgentRestartKeepsServing(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	f := startFleet(t, agent, consul.WatcherConfig{})
	const registered = "ok PUT /v1/agent/service/register"
	if n := f.reqs.count(registered); n != len(f.backends) {
		t.Fatalf("%d registrations before the restart, want %d", n, len(f.backends))
	}
	// follows counts the registrar's requests on the agent's copy of a
	// registration, answered or not.
	follows := func(b backend) int { return f.reqs.count("GET /v1/agent/service/" + b.reg.Instance.ID) }

	for round, restart := range []struct {
		name string
		down func() // before the agent starts again
	}{
		{"killed and started again at once", func() {}},
		{"killed, started again once every watch and registration has noticed", func() {
			agent.Stop()
			asked := map[string]int{}
			for _, b := range f.backends {
				asked[b.service] = follows(b)
			}
			vitamintest.Eventually(t, 15*time.Second, f.allStale)
			vitamintest.Eventually(t, 15*time.Second, func() error {
				for _, b := range f.backends {
					if follows(b) < asked[b.service]+4 {
						return errors.New(b.service + ": waiting for the registrar to fail four times")
					}
				}
				return nil
			})
		}},
	} {
		callsBefore, failedBefore := f.calls.Load(), f.failed.Load()
		start := time.Now()
		restart.down()
		agent.Restart(t)
		ready := time.Now()
		f.allPassing(t, agent)
		passing := time.Now()
		vitamintest.Eventually(t, 30*time.Second, f.allFresh)
		freshAgain := time.Now()
		f.goesOn(t)

		if n := f.failed.Load() - failedBefore; n != 0 {
			t.Errorf("%s: %d of %d calls failed; first: %q", restart.name, n, f.calls.Load()-callsBefore, f.errs())
		}
		if n, want := f.reqs.count(registered), (round+2)*len(f.backends); n != want {
			t.Errorf("%s: %d registrations in all, want %d: each instance once, and once again after each restart", restart.name, n, want)
		}
		f.registeredOnce(t, agent, restart.name)
		t.Logf("%s: agent ready again %v after the kill; all %d registrations passing %v after the kill (%v after the agent was ready); all watches fresh %v after the kill; %d calls, %d failed",
			restart.name, ready.Sub(start).Round(time.Millisecond), len(f.backends),
			passing.Sub(start).Round(time.Millisecond), passing.Sub(ready).Round(time.Millisecond),
			freshAgain.Sub(start).Round(time.Millisecond), f.calls.Load()-callsBefore, f.failed.Load()-failedBefore)
	}
	f.end(t)
}

// fleet is ten services registered through one Registrar on agent, each
// watched and called continuously through a Vitamin client that discovers
// it through one Watcher (see startBackends).
type fleet struct {
	backends []backend
	reqs     *counter // the registrar's requests

	mu     sync.Mutex
	latest map[string]discovery.Snapshot
	lost   []string             // snapshots that lost an instance once had
	staled map[string]time.Time // services whose watch is stale, since

	calls, failed atomic.Int64
	perService    []atomic.Int64
	firstErrs     []string // mu

	stop    context.CancelFunc
	workers sync.WaitGroup
}

// startFleet starts the fleet and waits until every watch is fresh, the
// registrar has read every probed check passing (so it knows what to
// restore), and every service has answered 20 calls.
func startFleet(t *testing.T, agent *vitamintest.Consul, wcfg consul.WatcherConfig) *fleet {
	t.Helper()
	rcl, reqs := client(t, agent)
	reg, err := consul.NewRegistrar(rcl, consul.RegistrarConfig{}, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	wcl, _ := client(t, agent)
	w, err := consul.NewWatcher(wcl, wcfg, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	f := &fleet{backends: startBackends(t, w), reqs: reqs, latest: map[string]discovery.Snapshot{}, staled: map[string]time.Time{}}
	f.perService = make([]atomic.Int64, len(f.backends))
	var handles []discovery.Registered
	for _, b := range f.backends {
		handles = append(handles, register(t, reg, b.reg))
	}
	t.Cleanup(func() {
		for _, h := range handles {
			_ = h.Deregister(context.Background())
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	t.Cleanup(f.halt)

	// Every watch follows its service; none may ever lose its instance
	// once it had it.
	for _, b := range f.backends {
		wa := watch(t, w, b.service)
		f.workers.Go(func() {
			had := false
			for {
				s, err := wa.Next(ctx)
				if err != nil {
					return
				}
				f.mu.Lock()
				f.latest[b.service] = s
				if _, ok := f.staled[b.service]; s.Stale && !ok {
					f.staled[b.service] = time.Now()
				}
				switch {
				case has(s, b.reg.Instance.ID):
					had = true
				case had:
					f.lost = append(f.lost, fmt.Sprintf("%s: %+v", b.service, s))
				}
				f.mu.Unlock()
			}
		})
	}
	vitamintest.Eventually(t, 30*time.Second, f.allFresh)
	vitamintest.Eventually(t, 10*time.Second, func() error {
		for _, b := range f.backends {
			if b.kind != discovery.CheckTTL && reqs.count("ok GET /v1/agent/health/service/id/"+b.reg.Instance.ID) == 0 {
				return errors.New(b.service + ": the registrar has not read the check passing yet")
			}
		}
		return nil
	})

	// Callers: one per service, calling continuously.
	for i, b := range f.backends {
		f.workers.Go(func() {
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := b.call(cctx)
				cancel()
				if ctx.Err() != nil {
					return
				}
				f.calls.Add(1)
				f.perService[i].Add(1)
				if err != nil {
					f.failed.Add(1)
					f.mu.Lock()
					if len(f.firstErrs) < 5 {
						f.firstErrs = append(f.firstErrs, b.service+": "+err.Error())
					}
					f.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-pace.C:
				}
			}
		})
	}
	f.callsBy(t, 20)
	return f
}

// halt stops the watches and callers and waits for them.
func (f *fleet) halt() {
	f.stop()
	f.workers.Wait()
}

// end halts the fleet and checks that no watch lost its instance.
func (f *fleet) end(t *testing.T) {
	t.Helper()
	f.halt()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lost) > 0 {
		t.Errorf("watches lost their instance: %q", f.lost)
	}
}

func (f *fleet) errs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.firstErrs...)
}

// allFresh says why not every watch is fresh with its instance.
func (f *fleet) allFresh() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.backends {
		s := f.latest[b.service]
		if !fresh(s) || !has(s, b.reg.Instance.ID) {
			return fmt.Errorf("%s: %+v", b.service, s)
		}
	}
	return nil
}

// allStale says why not every watch is stale.
func (f *fleet) allStale() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.backends {
		if s := f.latest[b.service]; !s.Stale {
			return fmt.Errorf("%s: %+v", b.service, s)
		}
	}
	return nil
}

// callsBy waits until every service has answered n more calls.
func (f *fleet) callsBy(t *testing.T, n int64) {
	t.Helper()
	base := make([]int64, len(f.backends))
	for i := range f.perService {
		base[i] = f.perService[i].Load()
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		for i := range f.perService {
			if f.perService[i].Load() < base[i]+n {
				return fmt.Errorf("%s: %d calls since, want %d", f.backends[i].service, f.perService[i].Load()-base[i], n)
			}
		}
		return nil
	})
}

// allPassing waits until agent lists every service's instance passing.
func (f *fleet) allPassing(t *testing.T, agent *vitamintest.Consul) {
	t.Helper()
	vitamintest.Eventually(t, 30*time.Second, func() error {
		for _, b := range f.backends {
			entries, _, err := agent.Client.Health().Service(b.service, "", true, nil)
			if err != nil {
				return err
			}
			if len(entries) != 1 {
				return fmt.Errorf("%s: %d passing instances", b.service, len(entries))
			}
		}
		return nil
	})
}

// goesOn waits until calls go on, and heartbeats and status reads go on
// (without registering anything again).
func (f *fleet) goesOn(t *testing.T) {
	t.Helper()
	f.callsBy(t, 20)
	renewed := make(map[string]int)
	for _, b := range f.backends {
		renewed[b.service] = beats(f.reqs, b)
	}
	vitamintest.Eventually(t, 15*time.Second, func() error {
		for _, b := range f.backends {
			if beats(f.reqs, b) < renewed[b.service]+2 {
				return errors.New(b.service + ": waiting for two more heartbeats or status reads")
			}
		}
		return nil
	})
}

// registeredOnce checks that agent holds each instance once, and the
// catalog lists it once.
func (f *fleet) registeredOnce(t *testing.T, agent *vitamintest.Consul, when string) {
	t.Helper()
	services, err := agent.Client.Agent().Services()
	if err != nil || len(services) != len(f.backends) {
		t.Errorf("%s: the agent holds %d services (err %v), want %d", when, len(services), err, len(f.backends))
	}
	for _, b := range f.backends {
		entries, _, err := agent.Client.Catalog().Service(b.service, "", nil)
		if err != nil || len(entries) != 1 || entries[0].ServiceID != b.reg.Instance.ID {
			t.Errorf("%s: catalog lists %d instances of %s (err %v), want its one instance once", when, len(entries), b.service, err)
		}
	}
}

// beats counts the requests that confirmed b with the agent: TTL renewals,
// or status reads of a probed check.
func beats(reqs *counter, b backend) int {
	if b.kind == discovery.CheckTTL {
		return reqs.count("ok PUT /v1/agent/check/update/service:" + b.reg.Instance.ID)
	}
	return reqs.count("ok GET /v1/agent/health/service/id/" + b.reg.Instance.ID)
}

// startBackends starts the servers of ten services, each with a client
// that discovers it through w, and stops them when the test ends.
func startBackends(t *testing.T, w discovery.Watcher) []backend {
	t.Helper()
	var out []backend
	httpBackend := func(name string, check func(url string) *discovery.Check) {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(rw, name)
		}))
		t.Cleanup(srv.Close)
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		hc, err := vclient.NewHTTP(name, vclient.Config{}, vclient.WithWatcher(w), vclient.WithoutTracing())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = vclient.CloseHTTP(hc) })
		kind := check(srv.URL).Kind()
		out = append(out, backend{service: name, kind: kind,
			reg: discovery.Registration{
				Instance: discovery.Instance{ID: name + "-1", Service: name, Address: "127.0.0.1", Port: port},
				Check:    check(srv.URL),
			},
			call: func(ctx context.Context) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+"/", nil)
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err == nil && (resp.StatusCode != http.StatusOK || string(body) != name) {
					err = fmt.Errorf("answer %d %q", resp.StatusCode, body)
				}
				return err
			}})
	}
	for i := range 4 {
		httpBackend("web-"+strconv.Itoa(i), func(url string) *discovery.Check {
			return &discovery.Check{HTTP: url + "/health", Interval: time.Second, Timeout: 2 * time.Second}
		})
	}
	for i := range 3 {
		httpBackend("ttl-"+strconv.Itoa(i), func(string) *discovery.Check {
			return &discovery.Check{TTL: 3 * time.Second, HeartbeatInterval: time.Second}
		})
	}
	for i := range 3 {
		name := "rpc-" + strconv.Itoa(i)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer()) // "" is SERVING
		go func() { _ = gs.Serve(lis) }()
		t.Cleanup(gs.Stop)
		conn, err := vclient.NewGRPC(context.Background(), name, vclient.Config{}, vclient.WithWatcher(w), vclient.WithoutTracing())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		hc := healthpb.NewHealthClient(conn)
		out = append(out, backend{service: name, kind: discovery.CheckGRPC,
			reg: discovery.Registration{
				Instance: discovery.Instance{ID: name + "-1", Service: name, Address: "127.0.0.1", Port: lis.Addr().(*net.TCPAddr).Port},
				Check:    &discovery.Check{GRPC: lis.Addr().String(), Interval: time.Second, Timeout: 2 * time.Second},
			},
			call: func(ctx context.Context) error {
				r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				if err == nil && r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					err = errors.New(r.GetStatus().String())
				}
				return err
			}})
	}
	return out
}

// TestRestoredCheckKeepsItsStatus restarts the agent while the agent's
// probes of an HTTP check hang (they never complete during the test): the
// instance comes back passing all the same, because its check is
// registered again with the status it had. An instance whose check was
// critical comes back critical.
func TestRestoredCheckKeepsItsStatus(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	cl, reqs := client(t, agent)
	reg, err := consul.NewRegistrar(cl, consul.RegistrarConfig{}, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var hang atomic.Bool
	var completed atomic.Int64 // probes answered while hanging
	released := make(chan struct{})
	healthy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-released:
			case <-r.Context().Done():
				return
			}
			completed.Add(1)
		}
	}))
	defer healthy.Close()
	// Hanging probes would hold up Deregister: the agent waits for a
	// check's probe before it removes the check.
	release := sync.OnceFunc(func() { close(released) })
	defer release()
	sick := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(http.StatusInternalServerError)
	}))
	defer sick.Close()
	check := func(url string) *discovery.Check {
		return &discovery.Check{HTTP: url, Interval: 200 * time.Millisecond, Timeout: time.Minute}
	}
	ok := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "ok-1", Service: "ok", Address: "127.0.0.1", Port: 9701}, Check: check(healthy.URL)})
	defer deregister(t, ok)
	bad := register(t, reg, discovery.Registration{
		Instance: discovery.Instance{ID: "sick-1", Service: "sick", Address: "127.0.0.1", Port: 9702}, Check: check(sick.URL)})
	defer deregister(t, bad)
	defer release()

	status := func(id string) string {
		s, _, err := agent.Client.Agent().AgentHealthServiceByID(id)
		if err != nil {
			return err.Error()
		}
		return s
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		switch {
		case reqs.count("ok GET /v1/agent/health/service/id/ok-1") == 0:
			return errors.New("the registrar has not read ok-1 passing yet")
		case reqs.count("GET /v1/agent/health/service/id/sick-1") < 2 || status("sick-1") != "critical":
			return errors.New("the registrar has not read sick-1 critical yet")
		}
		return nil
	})
	hang.Store(true)
	agent.Restart(t)
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := reqs.count("ok PUT /v1/agent/service/register"); n != 4 {
			return fmt.Errorf("%d registrations, want 4", n)
		}
		if s := status("ok-1"); s != "passing" {
			return fmt.Errorf("ok-1 is %s", s)
		}
		return nil
	})
	if n := completed.Load(); n != 0 {
		t.Fatalf("%d probes of ok-1 completed since the restart; want none, so that passing is the restored status", n)
	}
	if s := status("sick-1"); s != "critical" {
		t.Fatalf("sick-1 is %s after the restart, want critical as before", s)
	}
}
