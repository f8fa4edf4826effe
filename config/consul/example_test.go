package consul_test

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/config/consul"
)

// A property following a key in Consul KV.
func ExampleSource() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The api.Config carries the address, ACL token and TLS settings
	// (api.DefaultConfig reads them from CONSUL_HTTP_ADDR and friends).
	apiCfg := api.DefaultConfig()
	apiCfg.Address = agent.Addr // the test agent
	kv := agent.Client.KV()
	_, _ = kv.Put(&api.KVPair{Key: "example/orders/db/pool/max", Value: []byte("10")}, nil)

	src, err := consul.New(consul.Config{Prefix: "example/orders", Consul: apiCfg})
	if err != nil {
		panic(err)
	}
	cfg, err := config.Load(ctx, config.Layers{
		Defaults: map[string]any{"db.pool.max": 5},
		Sources:  []config.Source{src},
	})
	if err != nil {
		panic(err)
	}
	watching := make(chan error)
	go func() { watching <- cfg.Watch(ctx) }()

	pool := config.Int(cfg, "db.pool.max", 5)
	fmt.Println("pool:", pool.Get())
	changed := make(chan struct{})
	pool.OnChange(func(old, new int) {
		fmt.Printf("pool: %d -> %d\n", old, new)
		changed <- struct{}{}
	})

	_, _ = kv.Put(&api.KVPair{Key: "example/orders/db/pool/max", Value: []byte("25")}, nil)
	<-changed
	_, _ = kv.Delete("example/orders/db/pool/max", nil) // back to the defaults layer
	<-changed

	cancel()
	<-watching
	// Output:
	// pool: 10
	// pool: 10 -> 25
	// pool: 25 -> 5
}
