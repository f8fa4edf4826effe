package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	configconsul "github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service"
	skeletonv1 "github.com/vitamin-go/vitamin/template/skeleton/api/skeleton/v1"
	"github.com/vitamin-go/vitamin/template/skeleton/internal/items"
)

// Name is the service's name: what it registers under in discovery.
const Name = "skeleton"

// EnvPrefix selects the environment variables that override the file:
// SKELETON_ITEMS_DEFAULT__PRICE__CENTS=250 sets items.default_price_cents.
const EnvPrefix = "SKELETON_"

// Settings is the whole configuration file (config.yaml documents it).
type Settings struct {
	// Service is how the service runs: name, addresses, registration,
	// shutdown deadlines (service.Config).
	Service service.Config `yaml:"service" json:"service"`
	// NATS is the broker.
	NATS NATS `yaml:"nats" json:"nats"`
	// Resilience holds the policies of the calls to other services,
	// followed live.
	Resilience resilience.Config `yaml:"resilience" json:"resilience"`
	// Items are the domain's settings.
	Items items.Settings `yaml:"items" json:"items"`
}

// NATS says which broker the service uses.
type NATS struct {
	// URL of the NATS server, such as "nats://nats:4222". Default: the
	// NATS_URL environment variable; when both are empty, an embedded
	// broker (development only).
	URL string `yaml:"url" json:"url"`
}

// Defaults returns the settings that apply where the file says nothing.
func Defaults() Settings {
	return Settings{
		Service: service.Config{Name: Name},
		Resilience: resilience.Config{Default: resilience.Policy{
			Timeout:        time.Second,
			Retry:          &resilience.Retry{MaxAttempts: 3, Backoff: 20 * time.Millisecond, Jitter: 0.2},
			Budget:         &resilience.Budget{Ratio: 0.2},
			CircuitBreaker: &resilience.CircuitBreaker{FailureRate: 0.5, MinRequests: 10, Window: 10 * time.Second, OpenFor: 5 * time.Second},
		}},
		Items: items.Defaults(),
	}
}

// Registry is a registry that the service registers with and finds its
// peers in instead of Consul, such as discovery.Memory
// (vitamintest.Registry in tests).
type Registry interface {
	discovery.Registrar
	discovery.Watcher
}

// Option changes what New builds, for tests.
type Option func(*options)

type options struct {
	registry  Registry
	logger    *slog.Logger
	loggerSet bool
	signals   bool
}

// WithRegistry registers the service with r and finds the pricing service
// in it, whatever the configuration says about Consul.
func WithRegistry(r Registry) Option { return func(o *options) { o.registry = r } }

// WithLogger sets the service's logger; nil is silent.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger, o.loggerSet = l, true }
}

// WithoutSignals leaves stopping the service to Run's context.
func WithoutSignals() Option { return func(o *options) { o.signals = false } }

// New loads the configuration (defaults < file < Consul KV < SKELETON_*
// variables) and builds the service; Run starts it. What New opened is
// closed by the service's stop, or before New returns an error.
func New(ctx context.Context, file string, opts ...Option) (svc *service.Service, err error) {
	o := options{signals: true}
	for _, opt := range opts {
		opt(&o)
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	layers := config.Layers{Defaults: Defaults(), File: file, EnvPrefix: EnvPrefix}
	static, err := config.Load(ctx, layers)
	if err != nil {
		return nil, err
	}
	var s Settings
	if err := static.Snapshot().Unmarshal("", &s); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}

	// Discovery: Consul when an agent is named, else in memory.
	var svcOpts []service.Option
	if o.loggerSet {
		svcOpts = append(svcOpts, service.WithLogger(o.logger))
	}
	if !o.signals {
		svcOpts = append(svcOpts, service.WithSignals())
	}
	registry, discoveryIs := o.registry, "Consul"
	if registry == nil && cmp.Or(s.Service.Consul.Address, os.Getenv(api.HTTPAddrEnvName)) == "" {
		if registry, err = devRegistry(); err != nil {
			return nil, err
		}
		discoveryIs = "in memory (development: no service.consul.address or CONSUL_HTTP_ADDR configured)"
	}
	if registry != nil {
		if discoveryIs == "Consul" {
			discoveryIs = fmt.Sprintf("%T", registry)
		}
		svcOpts = append(svcOpts, service.WithRegistrar(registry))
	}
	svc, err = service.New(s.Service, svcOpts...)
	if err != nil {
		return nil, err
	}
	log := svc.Logger()
	var closers []service.Option // closed last given first

	// Live configuration: Consul KV above the file when there is Consul.
	props, configIs := static, "file "+file+", "+EnvPrefix+"* variables"
	if svc.Consul() != nil {
		prefix := "config/" + s.Service.Name + "/"
		kv, err := configconsul.New(configconsul.Config{Prefix: prefix},
			configconsul.WithClient(svc.Consul()), configconsul.WithLogger(log))
		if err != nil {
			return nil, err
		}
		layers.Sources = []config.Source{kv}
		if props, err = config.Load(ctx, layers, config.WithLogger(log)); err != nil {
			return nil, err
		}
		configIs += ", Consul KV " + prefix
	}
	defaultPrice := config.Int(props, "items.default_price_cents", s.Items.DefaultPriceCents, config.Between(0, 1_000_000))
	policies, err := resilience.NewRegistry(s.Resilience, resilience.WithLogger(log))
	if err != nil {
		return nil, err
	}
	if err := config.Follow(props, "resilience", policies.Update); err != nil {
		return nil, err
	}

	// The downstream service, by name, through Vitamin's client.
	var watcher discovery.Watcher = registry
	if registry == nil {
		w, err := consul.NewWatcher(svc.Consul(), consul.WatcherConfig{}, consul.WithLogger(log))
		if err != nil {
			return nil, err
		}
		undo = append(undo, func() { _ = w.Close() })
		closers = append(closers, service.WithCloser(service.CloseIO(w)))
		watcher = w
	}
	pricing, err := client.NewHTTP(s.Items.Pricing, client.Config{},
		client.WithWatcher(watcher, discovery.WithTags(service.ProtocolHTTP)),
		client.WithPolicies(policies), client.WithCaller(s.Service.Name), client.WithLogger(log))
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = client.CloseHTTP(pricing) })
	closers = append(closers, service.WithCloser(service.CloseFunc(func(context.Context) error { return client.CloseHTTP(pricing) })))

	// Messaging: the configured broker, else an embedded one.
	url, brokerIs := cmp.Or(s.NATS.URL, os.Getenv("NATS_URL")), ""
	if url == "" {
		b, err := startDevBroker()
		if err != nil {
			return nil, err
		}
		undo = append(undo, b.close)
		closers = append(closers, service.WithCloser(service.CloseFunc(func(context.Context) error { b.close(); return nil })))
		url, brokerIs = b.url, "embedded NATS at "+b.url+" (development: no nats.url or NATS_URL configured; events are lost at exit)"
	} else {
		brokerIs = "NATS at " + url
	}
	nc, err := nats.Connect(url, nats.Name(s.Service.Name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	undo = append(undo, nc.Close)
	closers = append(closers, service.WithCloser(service.CloseFunc(func(context.Context) error { nc.Close(); return nil })))
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	for _, sc := range items.Streams {
		if _, err := messaging.EnsureStream(ctx, js, sc); err != nil {
			return nil, err
		}
	}
	pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{},
		messaging.WithCaller(s.Service.Name), messaging.WithLogger(log))
	if err != nil {
		return nil, err
	}
	closers = append(closers, service.WithCloser(pub))

	// The domain, its consumer (once per event ID, with the processed keys
	// kept in a JetStream KV bucket shared by all instances) and its APIs.
	domain := items.New(log, s.Items, pricing, defaultPrice.Get, items.Publish(pub))
	store, err := messaging.NewKVStore(ctx, js, messaging.KVStoreConfig{Bucket: s.Service.Name + "_processed"})
	if err != nil {
		return nil, err
	}
	consumer, err := messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{
		Stream: items.Stream, Durable: s.Service.Name, Subjects: []string{items.ItemCreated},
	}, messaging.Typed(domain.Handle), messaging.WithStore(store), messaging.WithKeyFunc(items.EventKey), messaging.WithLogger(log))
	if err != nil {
		return nil, err
	}

	add := append([]service.Option{
		service.WithHTTP(domain.Handler()),
		service.WithGRPC(func(g *grpc.Server) { skeletonv1.RegisterSkeletonServer(g, domain) }),
		service.WithConsumer(consumer),
		service.WithConsumer(service.RunFunc(props.Watch)),
		service.WithReadiness("nats", func(context.Context) error {
			if st := nc.Status(); st != nats.CONNECTED {
				return errors.New("nats: " + st.String())
			}
			return nil
		}),
	}, closers...)
	if err := svc.Add(add...); err != nil {
		return nil, err
	}
	log.Info("runs on", "discovery", discoveryIs, "messaging", brokerIs, "config", configIs,
		"http", svc.Config().HTTPAddr, "grpc", svc.Config().GRPCAddr)
	return svc, nil
}
