package service_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// A service with an HTTP handler, registered in the in-memory registry,
// asked for its health once it runs, then stopped through its context.
func Example() {
	registry, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	defer registry.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })

	ctx, stop := context.WithCancel(context.Background())
	var svc *service.Service
	svc, err = service.New(service.Config{
		Name:       "greeter",
		InstanceID: "greeter-1",
		HTTPAddr:   "127.0.0.1:0",
		Shutdown:   service.Shutdown{Propagation: 10 * time.Millisecond},
	},
		service.WithHTTP(mux),
		service.WithRegistrar(registry),
		service.WithLogger(nil),
		service.WithStartHook(func(context.Context) error {
			for _, path := range []string{"/livez", "/readyz", "/v1/hello"} {
				resp, err := http.Get("http://" + svc.HTTPAddr() + path)
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				fmt.Println(path, resp.StatusCode, strings.TrimSpace(string(body)))
			}
			for _, in := range registry.Instances("greeter") {
				fmt.Println("registered:", in.ID, in.Tags)
			}
			stop() // as SIGTERM would
			return nil
		}),
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("run:", svc.Run(ctx))
	fmt.Println("registered after the stop:", len(registry.Instances("greeter")))
	// Output:
	// /livez 200 ok
	// /readyz 200 ok
	// /v1/hello 200 hello
	// registered: greeter-1 [http]
	// run: <nil>
	// registered after the stop: 0
}

// The closing contract: each shape of resource, handed to the service,
// closed in reverse order once the servers have drained.
func ExampleCloser() {
	say := func(what string) service.CloseFunc {
		return func(context.Context) error { fmt.Println("closed", what); return nil }
	}
	ctx, stop := context.WithCancel(context.Background())
	svc, err := service.New(service.Config{Name: "closer", HTTPAddr: "127.0.0.1:0", Shutdown: service.Shutdown{Propagation: -1}},
		service.WithLogger(nil),
		service.WithCloser(say("the client connection")), // Close() error: service.CloseIO(conn)
		service.WithCloser(say("the publisher")),         // Close(ctx) error: the value itself
		service.WithStartHook(func(context.Context) error { stop(); return nil }),
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("run:", svc.Run(ctx))
	// Output:
	// closed the publisher
	// closed the client connection
	// run: <nil>
}

func ExampleShutdown_Total() {
	cfg, _ := service.New(service.Config{Name: "orders"}, service.WithLogger(nil))
	fmt.Println(cfg.Config().Shutdown.Total())
	// Output: 28s
}

// A service's settings, as a person writes them in its file, loaded with
// package config; what is left out takes its documented default.
func ExampleConfig() {
	dir, err := os.MkdirTemp("", "service-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "orders.yaml")
	if err := os.WriteFile(file, []byte(`
service:
  name: orders
  instance_id: orders-1
  http_addr: ":8081"
  check: {interval: 10s}
  shutdown: {drain: 15s}
  telemetry: {exporter: none}
`), 0o600); err != nil {
		panic(err)
	}
	props, err := config.Load(context.Background(), config.Layers{File: file})
	if err != nil {
		panic(err)
	}
	var cfg service.Config
	if err := props.Snapshot().Unmarshal("service", &cfg); err != nil {
		panic(err)
	}
	svc, err := service.New(cfg, service.WithLogger(nil))
	if err != nil {
		panic(err)
	}
	c := svc.Config()
	fmt.Println(c.Name, c.InstanceID, c.HTTPAddr, c.Check.Interval, c.Check.Timeout)
	fmt.Println(c.Shutdown.Deregister, c.Shutdown.Propagation, c.Shutdown.Consumers, c.Shutdown.Drain, c.Shutdown.Close, c.Shutdown.Telemetry)
	fmt.Println("at most", c.Shutdown.Total(), "from SIGTERM to exit") // so terminationGracePeriodSeconds: 35
	// Output:
	// orders orders-1 :8081 10s 2s
	// 5s 2s 5s 15s 3s 3s
	// at most 33s from SIGTERM to exit
}
