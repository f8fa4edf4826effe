package consul_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/discovery"
	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// BenchmarkPropagation measures the time from a registration change at the
// agent (an instance registered or deregistered through its HTTP API) to
// the watcher's Next returning the new set. Run it with at least 200
// changes, e.g. -benchtime=400x. Budget: p99 < 200ms. With 100 watches of
// the service, the time is until the last of them has seen the change.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run("watches="+strconv.Itoa(n), func(b *testing.B) { benchmarkPropagation(b, n) })
	}
}

func benchmarkPropagation(b *testing.B, watches int) {
	agent := vitamintest.StartConsul(b)
	cl, _ := client(b, agent)
	w := newWatcher(b, cl, consul.WatcherConfig{})
	// Two instances that stay, so that the third coming and going is not a
	// drop self-preservation would hold.
	registerMany(b, cl, "bench", 2)
	ws := make([]discovery.Watch, watches)
	for i := range ws {
		ws[i] = watch(b, w, "bench")
		waitFor(b, ws[i], 10*time.Second, "2 instances", func(s discovery.Snapshot) bool { return len(s.Instances) == 2 })
	}
	agentAPI := cl.Agent()
	lat := make([]time.Duration, 0, b.N)

	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		var err error
		want := 2
		if i%2 == 0 {
			want = 3
			err = agentAPI.ServiceRegister(&api.AgentServiceRegistration{ID: "bench-x", Name: "bench", Address: "127.0.0.1", Port: 7000 + i%1000})
		} else {
			err = agentAPI.ServiceDeregister("bench-x")
		}
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, wa := range ws {
			for {
				s, err := wa.Next(ctx)
				if err != nil {
					b.Fatalf("change %d: %v", i, err)
				}
				if len(s.Instances) == want {
					break
				}
			}
		}
		cancel()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "changes")
	b.Logf("%d changes: p50 %.2fms p99 %.2fms max %v", len(lat), q(0.5), q(0.99), lat[len(lat)-1])
}
