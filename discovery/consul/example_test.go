package consul_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"go.yaml.in/yaml/v3"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// Register an instance with a TTL check that the registrar renews, watch
// the service, then shut down in the right order.
func ExampleRegistrar() {
	ctx := context.Background()
	addr, stop := startAgent() // a real Consul dev agent, for this example
	defer stop()

	cfg := api.DefaultConfig()
	cfg.Address = addr // ACL Token, TLSConfig and Datacenter are set here too
	defer cfg.Transport.CloseIdleConnections()
	client, err := api.NewClient(cfg)
	if err != nil {
		panic(err)
	}

	reg, err := consul.NewRegistrar(client, consul.RegistrarConfig{})
	if err != nil {
		panic(err)
	}
	r, err := reg.Register(ctx, discovery.Registration{
		Instance: discovery.Instance{
			Service: "orders", Address: "127.0.0.1", Port: 8080,
			Tags: []string{"grpc"},
			Meta: map[string]string{discovery.MetaVersion: "1.4.0"},
		},
		Check: &discovery.Check{TTL: 10 * time.Second, DeregisterCriticalAfter: time.Minute},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("registered", r.Instance().ID)

	// On shutdown: mark not serving, then deregister; Deregister returns
	// once watchers can see the instance is gone, then drain and stop.
	if err := r.Deregister(ctx); err != nil {
		panic(err)
	}
	fmt.Println("deregistered")
	// Output:
	// registered orders-127.0.0.1-8080
	// deregistered
}

// Watch the passing instances of a service that carry a tag. Every watch
// of "orders" in the process shares one blocking query.
func ExampleWatcher() {
	ctx := context.Background()
	addr, stop := startAgent()
	defer stop()

	cfg := api.DefaultConfig()
	cfg.Address = addr
	defer cfg.Transport.CloseIdleConnections()
	client, err := api.NewClient(cfg)
	if err != nil {
		panic(err)
	}
	reg, _ := consul.NewRegistrar(client, consul.RegistrarConfig{})
	for i, tag := range []string{"grpc", "http"} {
		r, err := reg.Register(ctx, discovery.Registration{
			Instance: discovery.Instance{Service: "orders", Address: "127.0.0.1", Port: 8080 + i, Tags: []string{tag}},
			Check:    &discovery.Check{TTL: 10 * time.Second},
		})
		if err != nil {
			panic(err)
		}
		defer r.Deregister(ctx)
	}

	w, err := consul.NewWatcher(client, consul.WatcherConfig{})
	if err != nil {
		panic(err)
	}
	defer w.Close()
	watch, err := w.Watch(ctx, "orders", discovery.WithTags("grpc"))
	if err != nil {
		panic(err)
	}
	defer watch.Close()

	// Next blocks until the set changes; the first call returns the
	// current set. A consumer (a resolver, a balancer) loops on it.
	for {
		s, err := watch.Next(ctx)
		if err != nil {
			panic(err)
		}
		if len(s.Instances) == 0 {
			continue // the agent has not synced the catalog yet
		}
		for _, in := range s.Instances {
			fmt.Println(in.Endpoint(), in.Tags, "stale:", s.Stale)
		}
		break
	}
	// Output:
	// 127.0.0.1:8080 [grpc] stale: false
}

// startAgent starts a Consul dev agent with the test environment and
// returns its HTTP address and a function that stops it.
func startAgent() (addr string, stop func()) {
	tb := vitamintest.NewDetached("example")
	agent := vitamintest.StartConsul(tb)
	return agent.Addr, tb.Close
}

// The timings that carry a service through an agent restart are settings
// a person writes in a file: how soon a registrar asks a restarted agent
// again, and how long a watcher holds the last good set meanwhile.
func ExampleWatcherConfig() {
	var cfg struct {
		Registrar consul.RegistrarConfig `yaml:"registrar"`
		Watcher   consul.WatcherConfig   `yaml:"watcher"`
	}
	dec := yaml.NewDecoder(strings.NewReader(`
registrar:
  backoff: 50ms       # ask a vanished agent again after 50ms, then 100ms…
  max_backoff: 500ms  # …and at least every 500ms
watcher:
  self_preservation:
    restart_grace: 10s # after a restart, hold the last good set up to 10s
`))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		panic(err)
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		panic(err)
	}
	if _, err := consul.NewRegistrar(client, cfg.Registrar); err != nil {
		panic(err)
	}
	w, err := consul.NewWatcher(client, cfg.Watcher)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	fmt.Println(cfg.Registrar.Backoff, cfg.Registrar.MaxBackoff, cfg.Watcher.SelfPreservation.RestartGrace)
	// Output: 50ms 500ms 10s
}
