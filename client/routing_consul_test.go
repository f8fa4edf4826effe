package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/config"
	configconsul "github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// kvConfig loads a configuration whose one layer is agent's KV under
// prefix, watched until the test ends.
func kvConfig(t *testing.T, agent *vitamintest.Consul, prefix string) *config.Config {
	t.Helper()
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
	return cfg
}

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
	cfg := kvConfig(t, agent, prefix)

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

// TestProgressiveDeliveryFollowsConsulKV takes a new version "v2" from
// stage (pinned calls only) to canary (10%) to all and back (rollback:
// canary at 0%), each step a Consul KV transaction, while 8 goroutines
// call unpinned and one pinned to v2: every phase routes as it says and
// no call fails.
func TestProgressiveDeliveryFollowsConsulKV(t *testing.T) {
	agent := vitamintest.StartConsul(t)
	const prefix = "config/checkout/clients/orders/balancing/"
	txn := func(keys map[string]string) {
		t.Helper()
		ops := api.KVTxnOps{{Verb: api.KVDeleteTree, Key: prefix}}
		for k, v := range keys {
			ops = append(ops, &api.KVTxnOp{Verb: api.KVSet, Key: prefix + k, Value: []byte(v)})
		}
		if ok, resp, _, err := agent.Client.KV().Txn(ops, nil); err != nil || !ok {
			t.Fatalf("txn: %v %+v", err, resp)
		}
	}
	phases := []struct {
		name string
		keys map[string]string
		want func(t *testing.T, v2, n int) // unpinned calls to v2 of n
	}{
		{"stage", map[string]string{"pin/meta_key": "version", "stage/value": "v2"}, func(t *testing.T, v2, n int) {
			if v2 > 8 { // one call per caller may straddle the change
				t.Errorf("stage: %d of %d unpinned calls reached v2, want none", v2, n)
			}
		}},
		{"canary 10%", map[string]string{"pin/meta_key": "version", "canary/value": "v2", "canary/weight": "0.1"}, func(t *testing.T, v2, n int) {
			if sd := math.Sqrt(float64(n) * 0.09); math.Abs(float64(v2)-0.1*float64(n)) > 5*sd+8 {
				t.Errorf("canary 10%%: v2 served %d of %d unpinned calls", v2, n)
			}
		}},
		{"all", map[string]string{"pin/meta_key": "version"}, func(t *testing.T, v2, n int) {
			if share := float64(v2) / float64(n); share < 0.1 || share > 0.35 {
				t.Errorf("all: v2 served %.0f%% of unpinned calls, want about a fifth", 100*share)
			}
		}},
		{"rollback", map[string]string{"pin/meta_key": "version", "canary/value": "v2", "canary/weight": "0"}, func(t *testing.T, v2, n int) {
			if v2 > 8 {
				t.Errorf("rollback: %d of %d unpinned calls reached v2, want none", v2, n)
			}
		}},
	}
	txn(phases[0].keys)
	cfg := kvConfig(t, agent, "config/checkout/")

	reg := newRegistry(t)
	for _, id := range []string{"v1-a", "v1-b", "v1-c", "v1-d", "v2"} {
		b := startHTTP(t, id)
		version := "v1"
		if id == "v2" {
			version = "v2"
		}
		register(t, reg, b.instance(svc, map[string]string{discovery.MetaVersion: version}))
	}
	routing, err := client.NewRouting(client.Balancing{})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Follow(cfg, "clients.orders.balancing", routing.Update); err != nil {
		t.Fatal(err)
	}
	hc := newHTTP(t, client.Config{}, client.WithWatcher(reg), client.WithoutTracing(),
		client.WithRouting(routing), client.WithPolicies(policies(t, frozenPolicy)))
	call := func(pin string) (string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://orders/x", nil)
		if pin != "" {
			req.Header.Set("Vitamin-Pin", pin)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	var (
		phase  atomic.Int32
		stop   atomic.Bool
		mu     sync.Mutex
		byPh   = make([]map[string]int, len(phases))
		pinned = make([]map[string]int, len(phases))
		failed []error
		wg     sync.WaitGroup
	)
	for i := range byPh {
		byPh[i], pinned[i] = map[string]int{}, map[string]int{}
	}
	worker := func(pin string, into []map[string]int) {
		for !stop.Load() {
			before := phase.Load()
			id, err := call(pin)
			after := phase.Load()
			mu.Lock()
			switch {
			case err != nil:
				failed = append(failed, fmt.Errorf("phase %s, pin %q: %w", phases[before].name, pin, err))
			case before == after:
				into[before][id]++
			}
			mu.Unlock()
		}
	}
	for range 8 {
		wg.Go(func() { worker("", byPh) })
	}
	wg.Go(func() { worker("v2", pinned) })
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	count := func(m map[string]int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range m {
			n += c
		}
		return n
	}
	matches := func(p int) error {
		b := routing.Balancing()
		switch phases[p].name {
		case "stage":
			if b.Stage == nil || b.Canary != nil {
				return errors.New("not at stage yet")
			}
		case "canary 10%":
			if b.Stage != nil || b.Canary == nil || b.Canary.Weight != 0.1 {
				return errors.New("not at canary yet")
			}
		case "all":
			if b.Stage != nil || b.Canary != nil {
				return errors.New("not at all yet")
			}
		case "rollback":
			if b.Canary == nil || b.Canary.Weight != 0 {
				return errors.New("not rolled back yet")
			}
		}
		return nil
	}
	for p := range phases {
		if p > 0 {
			txn(phases[p].keys)
		}
		vitamintest.Eventually(t, 10*time.Second, func() error { return matches(p) })
		phase.Store(int32(p))
		vitamintest.Eventually(t, 30*time.Second, func() error {
			if n := count(byPh[p]); n < 3000 {
				return fmt.Errorf("%d unpinned calls in phase %s", n, phases[p].name)
			}
			return nil
		})
	}
	stop.Store(true)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d calls failed during the promotion and rollback; first: %v", len(failed), failed[0])
	}
	for p, ph := range phases {
		n := count(byPh[p])
		t.Logf("%s: unpinned calls %v; pinned to v2 %v", ph.name, byPh[p], pinned[p])
		ph.want(t, byPh[p]["v2"], n)
		if got, all := pinned[p]["v2"], count(pinned[p]); got != all {
			t.Errorf("%s: %d of %d calls pinned to v2 reached it", ph.name, got, all)
		}
	}
}
