package consul_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/config"
	"github.com/vitamin-go/vitamin/config/consul"
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
