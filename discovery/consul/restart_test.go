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
	rcl, reqs := client(t, agent)
	reg, err := consul.NewRegistrar(rcl, consul.RegistrarConfig{}, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	wcl, _ := client(t, agent)
	w, err := consul.NewWatcher(wcl, consul.WatcherConfig{}, consul.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })

	backends := startBackends(t, w)
	var handles []discovery.Registered
	for _, b := range backends {
		handles = append(handles, register(t, reg, b.reg))
	}
	t.Cleanup(func() {
		for _, h := range handles {
			_ = h.Deregister(context.Background())
		}
	})

	// Every watch follows its service; none may ever lose its instance
	// once it had it.
	var (
		mu       sync.Mutex
		latest   = map[string]discovery.Snapshot{}
		lost     []string
		followed sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for _, b := range backends {
		wa := watch(t, w, b.service)
		followed.Go(func() {
			had := false
			for {
				s, err := wa.Next(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				latest[b.service] = s
				switch {
				case has(s, b.reg.Instance.ID):
					had = true
				case had:
					lost = append(lost, fmt.Sprintf("%s: %+v", b.service, s))
				}
				mu.Unlock()
			}
		})
	}
	defer followed.Wait()
	defer stop()
	allFresh := func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range backends {
			s := latest[b.service]
			if !fresh(s) || !has(s, b.reg.Instance.ID) {
				return fmt.Errorf("%s: %+v", b.service, s)
			}
		}
		return nil
	}
	vitamintest.Eventually(t, 30*time.Second, allFresh)
	// The registrar has read each probed check passing, so it knows what
	// to restore.
	vitamintest.Eventually(t, 10*time.Second, func() error {
		for _, b := range backends {
			if b.kind != discovery.CheckTTL && reqs.count("ok GET /v1/agent/health/service/id/"+b.reg.Instance.ID) == 0 {
				return errors.New(b.service + ": the registrar has not read the check passing yet")
			}
		}
		return nil
	})

	// Callers: one per service, calling continuously.
	var calls, failed atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	var callers sync.WaitGroup
	perService := make([]atomic.Int64, len(backends))
	for i, b := range backends {
		callers.Go(func() {
			pace := time.NewTicker(5 * time.Millisecond)
			defer pace.Stop()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := b.call(cctx)
				cancel()
				if ctx.Err() != nil {
					return
				}
				calls.Add(1)
				perService[i].Add(1)
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, b.service+": "+err.Error())
					}
					errMu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-pace.C:
				}
			}
		})
	}
	defer callers.Wait()
	defer stop()
	callsBy := func(n int64) {
		t.Helper()
		base := make([]int64, len(backends))
		for i := range perService {
			base[i] = perService[i].Load()
		}
		vitamintest.Eventually(t, 30*time.Second, func() error {
			for i := range perService {
				if perService[i].Load() < base[i]+n {
					return fmt.Errorf("%s: %d calls since, want %d", backends[i].service, perService[i].Load()-base[i], n)
				}
			}
			return nil
		})
	}
	callsBy(20)
	const registered = "ok PUT /v1/agent/service/register"
	if n := reqs.count(registered); n != len(backends) {
		t.Fatalf("%d registrations before the restart, want %d", n, len(backends))
	}
	allStale := func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range backends {
			if s := latest[b.service]; !s.Stale {
				return fmt.Errorf("%s: %+v", b.service, s)
			}
		}
		return nil
	}
	// follows counts the registrar's requests on the agent's copy of a
	// registration, answered or not.
	follows := func(b backend) int { return reqs.count("GET /v1/agent/service/" + b.reg.Instance.ID) }

	for round, restart := range []struct {
		name string
		down func() // before the agent starts again
	}{
		{"killed and started again at once", func() {}},
		{"killed, started again once every watch and registration has noticed", func() {
			agent.Stop()
			asked := map[string]int{}
			for _, b := range backends {
				asked[b.service] = follows(b)
			}
			vitamintest.Eventually(t, 15*time.Second, allStale)
			vitamintest.Eventually(t, 15*time.Second, func() error {
				for _, b := range backends {
					if follows(b) < asked[b.service]+4 {
						return errors.New(b.service + ": waiting for the registrar to fail four times")
					}
				}
				return nil
			})
		}},
	} {
		callsBefore, failedBefore := calls.Load(), failed.Load()
		start := time.Now()
		restart.down()
		agent.Restart(t)
		ready := time.Now()
		vitamintest.Eventually(t, 30*time.Second, func() error {
			for _, b := range backends {
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
		passing := time.Now()
		vitamintest.Eventually(t, 30*time.Second, allFresh)
		freshAgain := time.Now()

		// Calls go on after the recovery; heartbeats and status reads go
		// on without registering anything again.
		callsBy(20)
		renewed := make(map[string]int)
		for _, b := range backends {
			renewed[b.service] = beats(reqs, b)
		}
		vitamintest.Eventually(t, 15*time.Second, func() error {
			for _, b := range backends {
				if beats(reqs, b) < renewed[b.service]+2 {
					return errors.New(b.service + ": waiting for two more heartbeats or status reads")
				}
			}
			return nil
		})

		if n := failed.Load() - failedBefore; n != 0 {
			t.Errorf("%s: %d of %d calls failed; first: %q", restart.name, n, calls.Load()-callsBefore, firstErrs)
		}
		if n, want := reqs.count(registered), (round+2)*len(backends); n != want {
			t.Errorf("%s: %d registrations in all, want %d: each instance once, and once again after each restart", restart.name, n, want)
		}
		services, err := agent.Client.Agent().Services()
		if err != nil || len(services) != len(backends) {
			t.Errorf("%s: the agent holds %d services (err %v), want %d", restart.name, len(services), err, len(backends))
		}
		for _, b := range backends {
			entries, _, err := agent.Client.Catalog().Service(b.service, "", nil)
			if err != nil || len(entries) != 1 || entries[0].ServiceID != b.reg.Instance.ID {
				t.Errorf("%s: catalog lists %d instances of %s (err %v), want its one instance once", restart.name, len(entries), b.service, err)
			}
		}
		t.Logf("%s: agent ready again %v after the kill; all %d registrations passing %v after the kill (%v after the agent was ready); all watches fresh %v after the kill; %d calls, %d failed",
			restart.name, ready.Sub(start).Round(time.Millisecond), len(backends),
			passing.Sub(start).Round(time.Millisecond), passing.Sub(ready).Round(time.Millisecond),
			freshAgain.Sub(start).Round(time.Millisecond), calls.Load()-callsBefore, failed.Load()-failedBefore)
	}
	stop()
	callers.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(lost) > 0 {
		t.Errorf("watches lost their instance: %q", lost)
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
