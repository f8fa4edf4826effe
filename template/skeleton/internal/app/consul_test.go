package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/template/skeleton/internal/app"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestConsul runs the service as in production: registered in a real
// Consul agent, found through it, with Consul KV as a live configuration
// layer. It needs a consul binary (VITAMIN_CONSUL_BIN or PATH) and skips
// without one, in CI too: the project's own CI does not install Consul.
func TestConsul(t *testing.T) {
	if _, err := vitamintest.ConsulBinary(); err != nil {
		t.Skip(err) // it says how to get one
	}
	agent := vitamintest.StartConsul(t)
	t.Setenv("SKELETON_SERVICE_CONSUL_ADDRESS", agent.Addr)
	t.Setenv("SKELETON_SERVICE_CHECK_INTERVAL", "1s")
	t.Setenv("SKELETON_SERVICE_CHECK_TIMEOUT", "1s")
	t.Setenv("SKELETON_NATS_URL", vitamintest.StartNATS(t).URL)
	run(t, projectConfig)

	w, err := consul.NewWatcher(agent.Client, consul.WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	hc, err := client.NewHTTP(app.Name, client.Config{}, client.WithWatcher(w, discovery.WithTags(service.ProtocolHTTP)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseHTTP(hc) })
	s := &started{http: hc}

	// Found through Consul once its check passes; the fallback price from
	// Consul KV, live.
	if _, err := agent.Client.KV().Put(&api.KVPair{Key: "config/" + app.Name + "/items/default_price_cents", Value: []byte("333")}, nil); err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 20*time.Second, func() error {
		if item := s.tryCreate("tea"); item.PriceCents != 333 {
			return fmt.Errorf("item %+v: want the price from Consul KV, 333", item)
		}
		return nil
	})
}
