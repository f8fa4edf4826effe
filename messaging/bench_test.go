package messaging

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// Settings shared by the raw and the Vitamin consumers of the benchmark,
// so that they differ only in what Vitamin adds.
const (
	benchWarmup        = 1000 // messages consumed before the clock starts
	benchBatch         = 64   // PullMaxMessages / ConsumerConfig.BatchSize
	benchMaxAckPending = 1000
	benchAckWait       = 30 * time.Second
)

// BenchmarkConsumerThroughput compares, on one stream, a raw jetstream
// Consume that acknowledges each message with Vitamin's consumer, for each
// idempotency store. Both run in the same benchmark on the same stream
// (each with its own durable consumer), with the same batch, pull
// heartbeat, ack settings and number of goroutines running the handler:
// Workers 1 is compared with a Consume callback that acks, Workers 8 with
// a callback that hands each message to 8 goroutines that ack. Each case
// runs benchPairs pairs of passes, a raw pass and then a Vitamin pass
// (with a new store each time), and each pair gives a ratio: the two
// passes of a pair share the machine's state of the moment, and the
// median of the ratios is not decided by one pass that the shared machine
// slowed, or that met nats.go's occasional Consume stall (see
// pullHeartbeat and TestConsumeStall). The first benchWarmup messages of
// each pass are not timed.
//
// Metrics: x-raw, the median ratio of Vitamin's rate to the raw rate, with
// x-raw-min and x-raw-max, the lowest and highest of the pairs: the
// budget is x-raw ≥ 0.85 with the memory store, ≥ 0.4 with the KV store
// and ≥ 0.25 with the SQL store, at 8 workers. msgs/s and raw-msgs/s are
// the median rates, and ns/op is Vitamin's median time per message.
// Run with a fixed count, for example -benchtime=20000x.
func BenchmarkConsumerThroughput(b *testing.B) {
	cases := []struct {
		name    string
		workers int
		store   func(b *testing.B, e *env, pass string) Store // a new one for each pass
	}{
		{"memory/workers=1", 1, benchMemoryStore},
		{"memory/workers=8", 8, benchMemoryStore},
		{"kv/workers=8", 8, func(b *testing.B, e *env, pass string) Store {
			s, err := NewKVStore(testCtx(b), e.js, KVStoreConfig{Bucket: "processed_" + pass})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"sql/workers=8", 8, func(b *testing.B, e *env, _ string) Store { return newSQLDB(b).store }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEnv(b, benchWarmup+b.N)
			b.StopTimer() // the passes time themselves, without their warm-up
			var raw, vit, ratio []float64
			for i := range benchPairs {
				pass := strconv.Itoa(i + 1)
				r := benchRaw(b, e, "raw"+pass, tc.workers)
				v := benchVitamin(b, e, "vitamin"+pass, tc.workers, tc.store(b, e, pass))
				raw, vit, ratio = append(raw, r), append(vit, v), append(ratio, v/r)
			}
			b.ReportMetric(1e9/median(vit), "ns/op")
			b.ReportMetric(median(vit), "msgs/s")
			b.ReportMetric(median(raw), "raw-msgs/s")
			b.ReportMetric(median(ratio), "x-raw")
			b.ReportMetric(slices.Min(ratio), "x-raw-min")
			b.ReportMetric(slices.Max(ratio), "x-raw-max")
		})
	}
}

// benchPairs is how many times each case runs a raw pass and then a
// Vitamin pass; odd, so that a median is one of them.
const benchPairs = 5

func median(xs []float64) float64 { return slices.Sorted(slices.Values(xs))[len(xs)/2] }

func benchMemoryStore(*testing.B, *env, string) Store {
	s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 1 << 20})
	return s
}

// benchPass counts one consumer's messages and times those after the
// warm-up. It is safe for concurrent use.
type benchPass struct {
	n          atomic.Int64
	total      int64
	start, end time.Time // written before done is closed
	done       chan struct{}
}

func newBenchPass(b *testing.B) *benchPass {
	return &benchPass{total: int64(benchWarmup + b.N), done: make(chan struct{})}
}

func (p *benchPass) count() {
	switch p.n.Add(1) {
	case benchWarmup:
		p.start = time.Now()
	case p.total:
		p.end = time.Now()
		close(p.done)
	}
}

// rate waits for the pass to end and returns its timed messages per second.
func (p *benchPass) rate(b *testing.B) float64 {
	<-p.done
	return float64(b.N) / p.end.Sub(p.start).Seconds()
}

// benchRaw consumes the whole stream with jetstream alone and returns the
// rate after the warm-up.
func benchRaw(b *testing.B, e *env, durable string, workers int) float64 {
	b.Helper()
	cons, err := e.js.CreateOrUpdateConsumer(testCtx(b), "events", jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: benchAckWait,
		MaxDeliver: -1, MaxAckPending: benchMaxAckPending})
	if err != nil {
		b.Fatal(err)
	}
	p := newBenchPass(b)
	handle := func(m jetstream.Msg) {
		_ = m.Ack()
		p.count()
	}
	deliver := handle
	var wg sync.WaitGroup
	var work chan jetstream.Msg
	if workers > 1 {
		work = make(chan jetstream.Msg, workers)
		for range workers {
			wg.Go(func() {
				for m := range work {
					handle(m)
				}
			})
		}
		deliver = func(m jetstream.Msg) { work <- m }
	}
	cc, err := cons.Consume(deliver, jetstream.PullMaxMessages(benchBatch), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		b.Fatal(err)
	}
	rate := p.rate(b)
	cc.Stop()
	<-cc.Closed()
	if work != nil {
		close(work)
		wg.Wait()
	}
	return rate
}

// benchVitamin consumes the whole stream with a Consumer and returns the
// rate after the warm-up.
func benchVitamin(b *testing.B, e *env, durable string, workers int, store Store) float64 {
	b.Helper()
	p := newBenchPass(b)
	c, err := NewConsumer(testCtx(b), e.js, ConsumerConfig{Stream: "events", Durable: durable,
		Workers: workers, BatchSize: benchBatch, MaxAckPending: benchMaxAckPending, AckWait: benchAckWait},
		func(ctx context.Context, m *Message) error {
			p.count()
			return nil
		}, WithStore(store))
	if err != nil {
		b.Fatal(err)
	}
	stop := run(b, c)
	rate := p.rate(b)
	stop()
	return rate
}

// benchEnv starts a server with the "events" stream holding n messages.
func benchEnv(b *testing.B, n int) *env {
	b.Helper()
	srv := vitamintest.StartNATS(b)
	e := &env{srv: srv, nc: srv.Connect(b)}
	e.js = newJS(b, e.nc)
	ctx := testCtx(b)
	if _, err := EnsureStream(ctx, e.js, StreamConfig{Name: "events", Subjects: []string{"events.>"}}); err != nil {
		b.Fatal(err)
	}
	p, err := NewPublisher(e.js, PublisherConfig{MaxPending: 1024})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := p.PublishAsync(ctx, "events.bench", order{ID: strconv.Itoa(i), Total: i}); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return e
}
