package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// announce registers an instance of service listening at addr.
func announce(reg *vitamintest.Registry, service, id, addr string, meta map[string]string) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	_, err := reg.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
		ID: id, Service: service, Address: host, Port: p, Meta: meta,
	}})
	if err != nil {
		panic(err)
	}
}

func ExampleNewGRPC() {
	// Two instances of "inventory" on loopback, announced in an in-memory
	// registry (a discovery/consul Watcher works the same way).
	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	for _, id := range []string{"inventory-1", "inventory-2"} {
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go func() { _ = srv.Serve(lis) }()
		defer srv.Stop()
		announce(reg, "inventory", id, lis.Addr().String(), nil)
	}

	policies, _ := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		Retry: &resilience.Retry{MaxAttempts: 3}, // retries go to another instance
	}})
	conn, err := client.NewGRPC(context.Background(), "inventory", client.Config{},
		client.WithWatcher(reg),
		client.WithPolicies(policies),
		client.WithCaller("checkout"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetStatus())
	// Output: SERVING
}

func ExampleConfig() {
	// What a person writes in a file: the settings of each client, under
	// the called service's name.
	file := `
inventory:
  balancing:
    algorithm: round_robin
    outlier: {consecutive: 3, base_ejection: 10s}
    canary: {weight: 0.05}
`
	var clients map[string]client.Config
	dec := yaml.NewDecoder(strings.NewReader(file))
	dec.KnownFields(true) // an unknown key is an error
	if err := dec.Decode(&clients); err != nil {
		fmt.Println(err)
		return
	}
	cfg := clients["inventory"]
	b := cfg.Balancing
	fmt.Println(b.Algorithm, b.Outlier.Consecutive, b.Outlier.BaseEjection, b.Canary.Weight, cfg.Validate())

	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	cfg.Balancing.Outlier.MaxEjectedShare = 2
	_, err := client.NewHTTP("inventory", cfg, client.WithWatcher(reg))
	fmt.Println(err)
	// Output:
	// round_robin 3 10s 0.05 <nil>
	// client: invalid configuration: Config.Balancing.Outlier.MaxEjectedShare = 2: must be in [0, 1]
}

func ExampleNewHTTP() {
	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "order %s for %s", r.URL.Path[len("/v1/orders/"):], r.Header.Get(resilience.CallerHeader))
	}))
	defer srv.Close()
	announce(reg, "orders", "orders-1", srv.Listener.Addr().String(), nil)

	hc, err := client.NewHTTP("orders", client.Config{}, client.WithWatcher(reg), client.WithCaller("checkout"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.CloseHTTP(hc)

	// The host is the service name; the client picks an instance.
	resp, err := hc.Get("http://orders/v1/orders/42")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: order 42 for checkout
}

func ExampleCanary() {
	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	for _, version := range []string{"v1", "canary"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, version)
		}))
		defer srv.Close()
		announce(reg, "orders", "orders-"+version, srv.Listener.Addr().String(),
			map[string]string{discovery.MetaVersion: version})
	}

	// 5 % of calls go to instances with version=canary; a call with the
	// header Vitamin-Pin: canary (or the baggage member vitamin.pin) always
	// does, and one pinned to v1 never does.
	hc, err := client.NewHTTP("orders", client.Config{Balancing: client.Balancing{
		Canary: &client.Canary{Weight: 0.05},
		Pin:    &client.Pin{},
	}}, client.WithWatcher(reg))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.CloseHTTP(hc)

	for _, pin := range []string{"canary", "v1"} {
		req, _ := http.NewRequest(http.MethodGet, "http://orders/v1/orders/42", nil)
		req.Header.Set("Vitamin-Pin", pin)
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("pinned to %s: served by %s\n", pin, body)
	}
	// Output:
	// pinned to canary: served by canary
	// pinned to v1: served by v1
}

func ExampleRouting() {
	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	for _, version := range []string{"v1", "canary"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, version)
		}))
		defer srv.Close()
		announce(reg, "orders", "orders-"+version, srv.Listener.Addr().String(),
			map[string]string{discovery.MetaVersion: version})
	}

	// The canary starts with no traffic. A service makes the routing
	// follow its configuration with config.Follow(cfg,
	// "clients.orders.balancing", routing.Update); here it is updated by
	// hand.
	routing, _ := client.NewRouting(client.Balancing{Canary: &client.Canary{Weight: 0}})
	hc, err := client.NewHTTP("orders", client.Config{}, client.WithWatcher(reg), client.WithRouting(routing))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.CloseHTTP(hc)
	served := func() string {
		counts := map[string]int{}
		for range 20 {
			resp, err := hc.Get("http://orders/v1/orders/42")
			if err != nil {
				return err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			counts[string(body)]++
		}
		return fmt.Sprint(counts)
	}
	fmt.Println("weight 0:", served())

	// Promote the canary: the next calls follow, on the same connections.
	_ = routing.Update(client.Balancing{Canary: &client.Canary{Weight: 1}})
	fmt.Println("weight 1:", served())

	// An invalid update is rejected whole; the routing stays as it was.
	err = routing.Update(client.Balancing{Canary: &client.Canary{Weight: 1.5}})
	fmt.Println(errors.Is(err, client.ErrInvalidConfig), routing.Balancing().Canary.Weight)
	// Output:
	// weight 0: map[v1:20]
	// weight 1: map[canary:20]
	// true 1
}

func ExampleFanOut() {
	reg, _ := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	defer reg.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "3 items")
	}))
	defer srv.Close()
	announce(reg, "cart", "cart-1", srv.Listener.Addr().String(), nil)
	// "recommendations" has no instance at all.

	cart, _ := client.NewHTTP("cart", client.Config{}, client.WithWatcher(reg))
	defer client.CloseHTTP(cart)
	recs, _ := client.NewHTTP("recommendations", client.Config{}, client.WithWatcher(reg))
	defer client.CloseHTTP(recs)

	fetch := func(hc *http.Client, url string) func(ctx context.Context) (any, error) {
		return func(ctx context.Context) (any, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		}
	}
	results := client.FanOut(context.Background(),
		client.Call{Name: "cart", Do: fetch(cart, "http://cart/v1/cart")},
		client.Call{Name: "recommendations", Do: fetch(recs, "http://recommendations/v1/for-you"),
			Fallback: func(ctx context.Context, cause error) (any, error) {
				if errors.Is(cause, client.ErrNoInstances) {
					return "bestsellers", nil // a static default
				}
				return nil, cause
			}},
		client.Call{Name: "reviews", Do: func(ctx context.Context) (any, error) {
			return nil, errors.New("reviews are down")
		}},
	)
	for _, r := range results {
		fmt.Printf("%s: value=%v fell back=%v err=%v\n", r.Name, r.Value, r.FellBack, r.Err)
	}
	fmt.Println(results.Err())
	// Output:
	// cart: value=3 items fell back=false err=<nil>
	// recommendations: value=bestsellers fell back=true err=<nil>
	// reviews: value=<nil> fell back=false err=reviews are down
	// client: call reviews: reviews are down
}
