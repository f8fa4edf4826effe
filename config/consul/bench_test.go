package consul_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/config/consul"
	"github.com/vitamin-go/vitamin/resilience"
)

// BenchmarkPutToOnChange measures how long a change takes from the Consul
// KV put to the property's OnChange callback, over at least 200 changes
// (run with -benchtime=300x for a fixed count). Budget: p99 < 100ms.
func BenchmarkPutToOnChange(b *testing.B) {
	const prefix = "bench/latency/"
	src, err := consul.New(consul.Config{Prefix: prefix, Consul: &api.Config{Address: agent.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	kv := agent.Client.KV()
	if _, err := kv.Put(&api.KVPair{Key: prefix + "v", Value: []byte("0")}, nil); err != nil {
		b.Fatal(err)
	}
	cfg := load(b, config.Layers{Sources: []config.Source{src}})
	p := config.Int(cfg, "v", 0)
	got := make(chan int, 1)
	p.OnChange(func(_, n int) { got <- n })

	n := max(b.N, 200)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := 1; i <= n; i++ {
		start := time.Now()
		if _, err := kv.Put(&api.KVPair{Key: prefix + "v", Value: []byte(strconv.Itoa(i))}, nil); err != nil {
			b.Fatal(err)
		}
		select {
		case v := <-got:
			if v != i {
				b.Fatalf("OnChange(%d), want %d", v, i)
			}
		case <-time.After(5 * time.Second):
			b.Fatalf("change %d did not arrive", i)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "changes")
}

// BenchmarkPutToPolicy measures how long a policy change takes from the
// Consul KV put to the next call: a registry follows the "resilience"
// keys, and each put changes one method's max attempts. It reports p50 and
// p99 over at least 200 changes (budget: p99 < 100ms) and the allocations
// of Registry.For on the hot path after each change (budget: 0).
func BenchmarkPutToPolicy(b *testing.B) {
	const prefix = "bench/policy/"
	const key = prefix + "resilience/overrides/orders_pkg_orders_get/retry/max_attempts"
	kv := agent.Client.KV()
	if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte("1")}, nil); err != nil {
		b.Fatal(err)
	}
	src, err := consul.New(consul.Config{Prefix: prefix, Consul: &api.Config{Address: agent.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := load(b, config.Layers{Sources: []config.Source{src}})
	registry, err := resilience.NewRegistry(resilience.Config{})
	if err != nil {
		b.Fatal(err)
	}
	// registry.Update, announcing each applied change to the benchmark.
	applied := make(chan struct{}, 1)
	err = config.Follow(cfg, "resilience", func(c resilience.Config) error {
		if err := registry.Update(c); err != nil {
			return err
		}
		select {
		case applied <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	<-applied
	attempts := func() int { return registry.For("orders", "pkg.Orders/Get").Policy().Retry.MaxAttempts }

	n := max(b.N, 200)
	lat := make([]time.Duration, 0, n)
	var allocs float64
	b.ResetTimer()
	for i := 2; i <= n+1; i++ {
		start := time.Now()
		if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(strconv.Itoa(i))}, nil); err != nil {
			b.Fatal(err)
		}
		select {
		case <-applied:
		case <-time.After(5 * time.Second):
			b.Fatalf("change %d did not arrive", i)
		}
		if got := attempts(); got != i {
			b.Fatalf("next call has max attempts %d, want %d", got, i)
		}
		lat = append(lat, time.Since(start))
		allocs = max(allocs, testing.AllocsPerRun(10, func() { attempts() }))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "changes")
	b.ReportMetric(allocs, "for-allocs/call")
}
