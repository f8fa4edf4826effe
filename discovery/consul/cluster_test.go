package consul_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// clusterWatch is the watcher configuration of the cluster tests: the
// servers run Consul's fastest Raft timing (heartbeats every 100ms, an
// election after a second without one), so the leader check runs every
// 100ms and reports no leader after 300ms without contact.
var clusterWatch = consul.WatcherConfig{LeaderCheck: 100 * time.Millisecond, MaxLastContact: 300 * time.Millisecond}

// TestLeaderKilledKeepsServing kills the leader of a three-server cluster
// (SIGKILL) while ten services registered through the client agent are
// called continuously through Vitamin clients watching through it: no
// call fails, the registrations stay as they were, the watches report
// staleness during the election and clear it after. It reports the
// election as the watches saw it.
func TestLeaderKilledKeepsServing(t *testing.T) {
	cl := vitamintest.StartConsulCluster(t)
	f := startFleet(t, cl.Agent, clusterWatch)
	registered := f.reqs.count("ok PUT /v1/agent/service/register")

	leader := cl.Leader(t)
	callsBefore := f.calls.Load()
	f.mu.Lock()
	clear(f.staled)
	f.mu.Unlock()
	killed := time.Now()
	leader.Stop()
	var next *vitamintest.Consul
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if next = cl.Leader(t); next == leader {
			return errors.New("the killed server is still the leader")
		}
		return nil
	})
	elected := time.Now()
	vitamintest.Eventually(t, 30*time.Second, f.allFresh)
	freshAgain := time.Now()
	f.callsBy(t, 20)

	f.mu.Lock()
	var staleAt []time.Duration
	for _, at := range f.staled {
		staleAt = append(staleAt, at.Sub(killed).Round(time.Millisecond))
	}
	f.mu.Unlock()
	slices.Sort(staleAt)
	if n := f.failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed while the leader was replaced; first: %q", n, f.calls.Load()-callsBefore, f.errs())
	}
	if len(staleAt) == 0 {
		t.Errorf("no watch reported staleness during the election")
	}
	if n := f.reqs.count("ok PUT /v1/agent/service/register"); n != registered {
		t.Errorf("%d registrations after the election, want %d: the client agent keeps them", n, registered)
	}
	f.registeredOnce(t, cl.Agent, "after the election")
	t.Logf("leader %s killed: %s elected after %v (as the client agent saw it); %d of %d watches reported staleness, after %v; all fresh again %v after the kill; %d calls, %d failed",
		leader.Node, next.Node, elected.Sub(killed).Round(time.Millisecond), len(staleAt), len(f.backends), staleAt,
		freshAgain.Sub(killed).Round(time.Millisecond), f.calls.Load()-callsBefore, f.failed.Load())

	// The old leader comes back as a follower, with its data.
	leader.Restart(t)
	cl.Healthy(t)
	f.callsBy(t, 20)
	if n := f.failed.Load(); n != 0 {
		t.Errorf("%d calls failed after the old leader came back; first: %q", n, f.errs())
	}
	f.end(t)
}

// TestClientAgentRestartRestoresRegistrations kills the client agent the
// services registered through and starts it again (with its data
// directory, as a node's agent restarts): every registration is back
// exactly once, and the calls go on.
func TestClientAgentRestartRestoresRegistrations(t *testing.T) {
	cl := vitamintest.StartConsulCluster(t)
	f := startFleet(t, cl.Agent, clusterWatch)
	killed := time.Now()
	cl.Agent.Restart(t)
	ready := time.Now()
	f.allPassing(t, cl.Agent)
	passing := time.Now()
	vitamintest.Eventually(t, 30*time.Second, f.allFresh)
	f.goesOn(t)
	f.registeredOnce(t, cl.Agent, "after the agent's restart")
	for _, s := range cl.Servers {
		for _, b := range f.backends {
			entries, _, err := s.Client.Catalog().Service(b.service, "", nil)
			if err != nil || len(entries) != 1 {
				t.Errorf("server %s lists %d instances of %s (err %v), want 1", s.Node, len(entries), b.service, err)
			}
		}
	}
	t.Logf("client agent ready again %v after the kill; all %d registrations passing %v after the kill; %d calls, %d failed: %q",
		ready.Sub(killed).Round(time.Millisecond), len(f.backends), passing.Sub(killed).Round(time.Millisecond),
		f.calls.Load(), f.failed.Load(), f.errs())
	if n := f.failed.Load(); n != 0 {
		t.Errorf("%d calls failed", n)
	}
	f.end(t)
}
