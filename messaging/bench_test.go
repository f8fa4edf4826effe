package messaging

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/internal/testenv"
)

// BenchmarkConsumerThroughput compares, on one stream of b.N messages, the
// raw jetstream Consume with an ack per message against Vitamin's consumer
// with each idempotency store. The msgs/s metric is what the budget is
// about: memory store ≥ 0.8 × raw. Run with a fixed count, for example
// -benchtime=20000x.
func BenchmarkConsumerThroughput(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		e := benchEnv(b)
		cons, err := e.js.CreateOrUpdateConsumer(testCtx(b), "events", jetstream.ConsumerConfig{
			Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
		if err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		done := make(chan struct{})
		b.ResetTimer()
		start := time.Now()
		cc, err := cons.Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			if n.Add(1) == int64(b.N) {
				close(done)
			}
		}, jetstream.PullMaxMessages(64))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		report(b, start)
		cc.Stop()
		<-cc.Closed()
	})
	stores := []struct {
		name  string
		store func(b *testing.B, e *env) Store
	}{
		{"memory", func(b *testing.B, e *env) Store {
			s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 1 << 20})
			return s
		}},
		{"kv", func(b *testing.B, e *env) Store {
			s, err := NewKVStore(testCtx(b), e.js, KVStoreConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"sql", func(b *testing.B, e *env) Store { return newSQLDB(b).store }},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			e := benchEnv(b)
			store := s.store(b, e)
			var n atomic.Int64
			done := make(chan struct{})
			c, err := NewConsumer(testCtx(b), e.js, ConsumerConfig{Stream: "events", Durable: "vitamin"},
				func(ctx context.Context, m *Message) error {
					if n.Add(1) == int64(b.N) {
						close(done)
					}
					return nil
				}, WithStore(store))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			stop := run(b, c)
			<-done
			report(b, start)
			stop()
		})
	}
}

func report(b *testing.B, start time.Time) {
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// benchEnv starts a server with the "events" stream holding b.N messages.
func benchEnv(b *testing.B) *env {
	b.Helper()
	srv := testenv.StartNATS(b)
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
	for i := range b.N {
		if _, err := p.PublishAsync(ctx, "events.bench", order{ID: strconv.Itoa(i), Total: i}); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	return e
}
