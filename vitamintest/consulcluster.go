package vitamintest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulCluster is a real Consul cluster on loopback, as production runs
// one: three servers and a client agent, each its own process with its own
// data directory and ports, joined with -retry-join; the servers elect a
// leader with -bootstrap-expect 3. Services register through the client
// agent, and clients read through it, as on a node of a real cluster.
// Members can be stopped (SIGKILL) and started again with their state.
//
// The servers run Consul's fastest Raft timing (raft_multiplier 1), so an
// election takes a second or two. It is safe for concurrent use.
type ConsulCluster struct {
	// Servers are the three servers, in the order they were started.
	Servers []*Consul
	// Agent is the client agent.
	Agent *Consul

	serverPorts map[string]*Consul // "127.0.0.1:<server port>" → server
}

// StartConsulCluster starts a cluster and waits until it has a leader and
// every member is in the catalog. The members are stopped when the test
// ends; their logs are attached to the output of a failed test. Without a
// consul binary the test is skipped (or fails under CI). Options apply to
// every member.
func StartConsulCluster(t testing.TB, opts ...ConsulOption) *ConsulCluster {
	t.Helper()
	bin, o := consulSetup(t, opts)
	// A free port may be taken by someone else before a member binds it:
	// start the whole cluster again, with other ports, a few times.
	var lastErr error
	for range 3 {
		cl, err := startConsulCluster(t, bin, o)
		if err == nil {
			return cl
		}
		lastErr = err
		for _, c := range append(cl.Servers, cl.Agent) {
			if c != nil {
				c.Stop()
			}
		}
	}
	t.Fatalf("vitamintest: consul cluster: %v", lastErr)
	return nil
}

// startConsulCluster starts the members and waits until every one is
// ready, or until one has exited (a port taken meanwhile, say).
func startConsulCluster(t testing.TB, bin string, o consulOptions) (*ConsulCluster, error) {
	t.Helper()
	cl := &ConsulCluster{serverPorts: map[string]*Consul{}}
	type ports struct{ http, serf, wan, server int }
	var all []ports
	for range 4 {
		all = append(all, ports{FreePort(t), FreePort(t), FreePort(t), FreePort(t)})
	}
	var join []string
	for _, p := range all[:3] {
		join = append(join, "-retry-join", "127.0.0.1:"+strconv.Itoa(p.serf))
	}
	dir := t.TempDir()
	for i, p := range all {
		node := "server-" + strconv.Itoa(i+1)
		if i == 3 {
			node = "agent"
		}
		c := &Consul{bin: bin, log: &Buffer{}, Node: node, Addr: "127.0.0.1:" + strconv.Itoa(p.http)}
		c.args = []string{"agent",
			"-node", node, "-data-dir", filepath.Join(dir, node),
			"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
			"-http-port", strconv.Itoa(p.http),
			"-serf-lan-port", strconv.Itoa(p.serf),
			"-serf-wan-port", strconv.Itoa(p.wan),
			"-server-port", strconv.Itoa(p.server),
			"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
			"-log-level", "debug",
		}
		c.args = append(c.args, join...)
		c.args = append(c.args, "-retry-interval", "200ms") // members start together: join again soon
		if i < 3 {
			c.args = append(c.args, "-server", "-bootstrap-expect", "3", "-hcl", "performance { raft_multiplier = 1 }")
		}
		for _, h := range o.hcl {
			c.args = append(c.args, "-hcl", h)
		}
		cfg := api.DefaultConfig()
		cfg.Address = c.Addr
		client, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Client = client
		attachOnFailure(t, "consul "+node, c.log)
		t.Cleanup(c.Stop)
		if i < 3 {
			cl.Servers = append(cl.Servers, c)
			cl.serverPorts["127.0.0.1:"+strconv.Itoa(p.server)] = c
		} else {
			cl.Agent = c
		}
		if err := c.spawn(); err != nil {
			return cl, fmt.Errorf("start consul %s: %w", node, err)
		}
	}
	members := append(cl.Servers, cl.Agent)
	ctx, exited := context.WithTimeout(context.Background(), 60*time.Second)
	defer exited()
	err := poll(ctx, func() error {
		for _, c := range members {
			if err := c.readyNow(); err != nil {
				if errors.Is(err, errConsulExited) {
					exited() // no use waiting for the others
					return fmt.Errorf("consul %s exited (see its log)", c.Node)
				}
				return fmt.Errorf("consul %s on %s not ready: %w", c.Node, c.Addr, err)
			}
		}
		return nil
	})
	return cl, err
}

// Leader returns the server that is the leader now, as the client agent
// sees it, waiting up to 30s for one.
func (cl *ConsulCluster) Leader(t testing.TB) *Consul {
	t.Helper()
	var leader *Consul
	Eventually(t, 30*time.Second, func() error {
		addr, err := cl.Agent.Client.Status().Leader()
		if err != nil {
			return err
		}
		if leader = cl.serverPorts[addr]; leader == nil {
			return fmt.Errorf("no known server is the leader (%q)", addr)
		}
		return nil
	})
	return leader
}

// Followers returns the servers that are not the leader now.
func (cl *ConsulCluster) Followers(t testing.TB) []*Consul {
	t.Helper()
	leader := cl.Leader(t)
	var out []*Consul
	for _, s := range cl.Servers {
		if s != leader {
			out = append(out, s)
		}
	}
	return out
}

// Healthy waits until every member runs, the cluster has a leader, and
// every server is a voter that autopilot reports healthy.
func (cl *ConsulCluster) Healthy(t testing.TB) {
	t.Helper()
	Eventually(t, 60*time.Second, func() error {
		h, err := cl.Servers[0].Client.Operator().AutopilotServerHealth(nil)
		if err != nil {
			return err
		}
		var bad []string
		for _, s := range h.Servers {
			if !s.Healthy || !s.Voter {
				bad = append(bad, s.Name)
			}
		}
		switch {
		case !h.Healthy || len(bad) > 0:
			return errors.New("servers not healthy: " + strings.Join(bad, ", "))
		case len(h.Servers) != len(cl.Servers):
			return fmt.Errorf("autopilot knows %d servers, want %d", len(h.Servers), len(cl.Servers))
		}
		return nil
	})
}
