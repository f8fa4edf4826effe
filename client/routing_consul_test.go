package client_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	configconsul "github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestCanaryWeightFollowsConsulKV changes a client's canary weight from 0
// to 10% and back to 0 in Consul KV while 8 goroutines call: the canary's
// share follows each change once the routing has it, and no call fails.
func TestCanaryWeightFollowsConsulKV(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	const prefix = "config/checkout/"
	const key = prefix + "clients/orders/balancing/canary/weight"
	put := func(v string) {
		t.Helper()
		if _, err := agent.Client.KV().Put(&api.KVPair{Key: key, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("0")
	src, err := configconsul.New(configconsul.Config{Consul: &api.Config{Address: agent.Addr}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(context.Background(), config.Layers{Sources: []config.Source{src}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- cfg.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})

	s, canary := routingFleet(t, startHTTP)
	if err := config.Follow(cfg, "clients.orders.balancing", s.routing.Update); err != nil {
		t.Fatal(err)
	}
	hc := newHTTP(t, client.Config{}, client.WithWatcher(s.reg), client.WithoutTracing(),
		client.WithRouting(s.routing), client.WithPolicies(policies(t, frozenPolicy)))

	// The phase is changed by this goroutine once the routing has the
	// new weight; a call counts for a phase if it began and ended in it.
	var (
		phase  atomic.Int32
		stop   atomic.Bool
		mu     sync.Mutex
		byPh   = []map[string]int{{}, {}, {}}
		failed []error
		wg     sync.WaitGroup
	)
	calls := func(p int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range byPh[p] {
			n += c
		}
		return n
	}
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				before := phase.Load()
				id, err := func() (string, error) {
					resp, err := hc.Get("http://orders/x")
					if err != nil {
						return "", err
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					return string(b), err
				}()
				after := phase.Load()
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err)
				case before == after:
					byPh[before][id]++
				}
				mu.Unlock()
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	weights := []float64{0, 0.1, 0}
	var lag []time.Duration
	for p, w := range weights {
		if p > 0 {
			put(fmt.Sprint(w))
			start := time.Now()
			vitamintest.Eventually(t, 5*time.Second, func() error {
				if got := s.routing.Balancing().Canary.Weight; got != w {
					return fmt.Errorf("the routing's canary weight is %v, want %v", got, w)
				}
				return nil
			})
			lag = append(lag, time.Since(start))
			phase.Store(int32(p))
		}
		vitamintest.Eventually(t, 30*time.Second, func() error {
			if n := calls(p); n < 4000 {
				return fmt.Errorf("%d calls at weight %v", n, w)
			}
			return nil
		})
	}
	stop.Store(true)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d calls failed while the canary weight changed; first: %v", len(failed), failed[0])
	}
	t.Logf("from the KV put to the routing: %v", lag)
	for p, w := range weights {
		n, got := calls(p), byPh[p][canary]
		t.Logf("canary weight %.0f%%: the canary served %d of %d calls: %v", 100*w, got, n, byPh[p])
		// A call made as the routing changed, before the phase did, may
		// have taken the new weight: one per caller at most.
		sd := math.Sqrt(float64(n) * w * (1 - w))
		if math.Abs(float64(got)-float64(n)*w) > 5*sd+8 {
			t.Errorf("at canary weight %.0f%%, the canary served %d of %d calls, want %.0f ± %.0f", 100*w, got, n, float64(n)*w, 5*sd+8)
		}
	}
}
