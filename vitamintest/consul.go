package vitamintest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulBinEnv names the environment variable that points at a consul
// binary to use instead of the one scripts/consul builds into .bin/.
const ConsulBinEnv = "VITAMIN_CONSUL_BIN"

const consulHow = "scripts/consul in the Vitamin repository (it builds .bin/consul), or install Consul on PATH, or set " + ConsulBinEnv

// ConsulOption changes how StartConsul runs the agent.
type ConsulOption func(*consulOptions)

type consulOptions struct {
	grpc, dns bool
	hcl       []string
}

// ConsulGRPC turns on the agent's gRPC port (off by default); its address is
// in Consul.GRPCAddr.
func ConsulGRPC() ConsulOption { return func(o *consulOptions) { o.grpc = true } }

// ConsulDNS turns on the agent's DNS port (off by default); its address is
// in Consul.DNSAddr.
func ConsulDNS() ConsulOption { return func(o *consulOptions) { o.dns = true } }

// ConsulHCL adds a snippet of agent configuration in HCL, for settings that
// have no command-line flag.
func ConsulHCL(hcl string) ConsulOption {
	return func(o *consulOptions) { o.hcl = append(o.hcl, hcl) }
}

// Consul is a real Consul agent listening on free loopback ports: a dev
// agent (a single server that keeps its state in memory) from
// StartConsul, or a member of a ConsulCluster (a server or a client agent
// with its own data directory). It is safe for concurrent use.
type Consul struct {
	// Addr is the host:port of the HTTP API.
	Addr string
	// GRPCAddr and DNSAddr are set when asked for with ConsulGRPC and
	// ConsulDNS.
	GRPCAddr, DNSAddr string
	// Client talks to the agent's HTTP API.
	Client *api.Client
	// Node is the agent's node name; it stays the same across restarts.
	Node string

	bin  string
	args []string
	log  *Buffer

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{} // closed when proc has exited
}

// ConsulBinary returns the path of the consul binary StartConsul runs: the
// one named by VITAMIN_CONSUL_BIN, else .bin/consul at the root of the
// Vitamin repository (when the test runs inside it; scripts/consul builds
// it), else the first consul on PATH. The error says how to get one.
func ConsulBinary() (string, error) {
	if p := os.Getenv(ConsulBinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", ConsulBinEnv, p, err)
		}
		return p, nil
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, ".bin", "consul")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("consul")
	if err != nil {
		return "", errors.New("no consul binary: none on PATH, none named by " + ConsulBinEnv + ", and no .bin/consul in the Vitamin repository")
	}
	return p, nil
}

// consulSetup finds the consul binary, skipping (or under CI failing) the
// test without one, and applies opts.
func consulSetup(t testing.TB, opts []ConsulOption) (string, consulOptions) {
	t.Helper()
	bin, err := ConsulBinary()
	if err != nil {
		Missing(t, "the consul binary ("+err.Error()+")", consulHow)
	}
	var o consulOptions
	for _, opt := range opts {
		opt(&o)
	}
	return bin, o
}

// StartConsul starts a Consul dev agent on free loopback ports and waits
// until it has elected itself leader and registered its own node. The agent
// is stopped when the test ends, and its log is attached to the test output
// if the test failed. Without a consul binary the test is skipped (or fails
// under CI).
func StartConsul(t testing.TB, opts ...ConsulOption) *Consul {
	t.Helper()
	bin, o := consulSetup(t, opts)
	c := &Consul{bin: bin, log: &Buffer{}, Node: "vitamin-test"}
	attachOnFailure(t, "consul agent", c.log)
	t.Cleanup(c.Stop)

	// A free port may be taken by someone else before the agent binds it:
	// try a few sets of ports.
	var lastErr error
	for range 3 {
		if lastErr = c.start(t, o); lastErr == nil {
			return c
		}
		c.Stop()
	}
	t.Fatalf("vitamintest: start consul: %v", lastErr)
	return nil
}

func (c *Consul) start(t testing.TB, o consulOptions) error {
	port := func(on bool) string {
		if !on {
			return "-1"
		}
		return strconv.Itoa(FreePort(t))
	}
	http := FreePort(t)
	grpc, dns := port(o.grpc), port(o.dns)
	c.Addr = "127.0.0.1:" + strconv.Itoa(http)
	c.GRPCAddr, c.DNSAddr = "", ""
	if o.grpc {
		c.GRPCAddr = "127.0.0.1:" + grpc
	}
	if o.dns {
		c.DNSAddr = "127.0.0.1:" + dns
	}
	c.args = []string{"agent", "-dev",
		"-node", c.Node,
		"-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
		"-http-port", strconv.Itoa(http),
		"-serf-lan-port", strconv.Itoa(FreePort(t)),
		"-serf-wan-port", strconv.Itoa(FreePort(t)),
		"-server-port", strconv.Itoa(FreePort(t)),
		"-grpc-port", grpc, "-grpc-tls-port", "-1", "-dns-port", dns,
		"-log-level", "debug",
	}
	for _, h := range o.hcl {
		c.args = append(c.args, "-hcl", h)
	}
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	cl, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	c.Client = cl
	return c.run()
}

// run starts the agent process with c.args and waits until it is ready.
func (c *Consul) run() error {
	if err := c.spawn(); err != nil {
		return err
	}
	return c.ready()
}

// spawn starts the agent process with c.args.
func (c *Consul) spawn() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return errors.New("consul agent already running")
	}
	cmd := exec.Command(c.bin, c.args...)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	c.proc, c.done = cmd, done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// ready waits until the agent knows a leader and its own node is in the
// catalog.
func (c *Consul) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := poll(ctx, c.readyNow); err != nil {
		return fmt.Errorf("consul agent on %s not ready: %w", c.Addr, err)
	}
	return nil
}

// errConsulExited says that the agent process is gone.
var errConsulExited = errors.New("consul agent exited")

// readyNow reports whether the agent runs, knows a leader and has its own
// node in the catalog.
func (c *Consul) readyNow() error {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return errConsulExited
	default:
	}
	leader, err := c.Client.Status().Leader()
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	n, _, err := c.Client.Catalog().Node(c.Node, nil)
	if err != nil {
		return err
	}
	if n == nil {
		return errors.New("agent's node not in the catalog yet")
	}
	return nil
}

// Stop kills the agent (SIGKILL), as a crash would, and waits for the
// process to exit. A dev agent forgets everything it held (dev mode keeps
// no state on disk); a cluster member keeps its data directory. Stopping
// a stopped agent does nothing.
func (c *Consul) Stop() {
	c.mu.Lock()
	proc, done := c.proc, c.done
	c.proc = nil
	c.mu.Unlock()
	if proc == nil {
		return
	}
	_ = proc.Process.Kill()
	<-done
}

// Restart stops the agent if it runs and starts it again on the same ports
// with the same node name, and waits until it is ready.
func (c *Consul) Restart(t testing.TB) {
	t.Helper()
	c.Stop()
	fmt.Fprintf(c.log, "--- vitamintest: restarting consul agent ---\n")
	if err := c.run(); err != nil {
		t.Fatalf("vitamintest: restart consul: %v", err)
	}
}

// Log returns what the agent printed so far.
func (c *Consul) Log() string { return c.log.String() }
