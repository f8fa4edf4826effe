package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// clusterMessages is the number of messages of
// TestR3ElectionsKeepEffectsExactlyOnce: VITAMIN_CLUSTER_MESSAGES, default
// 3,000 (the 10,000 take a few minutes under the race detector on
// two cores; run them with VITAMIN_CLUSTER_MESSAGES=10000).
func clusterMessages(t testing.TB) int {
	if s := os.Getenv("VITAMIN_CLUSTER_MESSAGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 3 {
			t.Fatalf("VITAMIN_CLUSTER_MESSAGES=%q is not a number of at least 3", s)
		}
		return n
	}
	return 3_000
}

// TestR3ElectionsKeepEffectsExactlyOnce publishes messages (see
// clusterMessages) with
// message IDs to an R3 stream on a three-server NATS cluster while three
// consumer instances (each its own connection) process them with an
// idempotency store — an R3 JetStream KV bucket, or PostgreSQL — and kills
// the stream's leader a third of the way in and, for the KV store, the
// bucket's leader two thirds of the way in, starting each again after its
// election. Every message has exactly one effect, every publish succeeds
// (retried under its message ID when an attempt failed during an
// election), and the stream holds each message once. It reports the pause
// each election caused to the publisher: the slowest publish of each
// phase (0 before the first kill, 1 during the stream's election, 2 after,
// 3 during the bucket's, 4 after).
func TestR3ElectionsKeepEffectsExactlyOnce(t *testing.T) {
	for _, kind := range []string{"kv", "sql"} {
		t.Run(kind, func(t *testing.T) {
			clusterMessages := clusterMessages(t)
			cl := vitamintest.StartNATSCluster(t)
			js, err := jetstream.New(cl.Connect(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{Name: "orders", Subjects: []string{"orders.>"}, Replicas: 3}); err != nil {
				t.Fatal(err)
			}

			var (
				store   messaging.Store
				mu      sync.Mutex
				effects = map[string]int{}
				effect  func(ctx context.Context, m *messaging.Message) error
				count   func() (rows, keys int)
			)
			switch kind {
			case "kv":
				s, err := messaging.NewKVStore(ctx, js, messaging.KVStoreConfig{Bucket: "processed", Replicas: 3})
				if err != nil {
					t.Fatal(err)
				}
				store = s
				effect = func(_ context.Context, m *messaging.Message) error {
					mu.Lock()
					effects[m.Key]++
					mu.Unlock()
					return nil
				}
				count = func() (int, int) {
					mu.Lock()
					defer mu.Unlock()
					rows := 0
					for _, n := range effects {
						rows += n
					}
					return rows, len(effects)
				}
			case "sql":
				pg := vitamintest.StartPostgres(t)
				if _, err := pg.DB.ExecContext(ctx, "CREATE TABLE effects (key TEXT NOT NULL)"); err != nil {
					t.Fatal(err)
				}
				s, err := messaging.NewSQLStore(ctx, pg.DB, messaging.SQLStoreConfig{})
				if err != nil {
					t.Fatal(err)
				}
				store = s
				effect = func(ctx context.Context, m *messaging.Message) error {
					_, err := m.Tx().ExecContext(ctx, "INSERT INTO effects (key) VALUES ($1)", m.Key)
					return err
				}
				count = func() (rows, keys int) {
					if err := pg.DB.QueryRowContext(ctx, "SELECT count(*), count(DISTINCT key) FROM effects").Scan(&rows, &keys); err != nil {
						t.Error(err)
					}
					return rows, keys
				}
			}

			handler := messaging.Handler(func(ctx context.Context, m *messaging.Message) error { return effect(ctx, m) })
			for i := range 3 {
				cjs, err := jetstream.New(cl.Connect(t))
				if err != nil {
					t.Fatal(err)
				}
				c, err := messaging.NewConsumer(ctx, cjs, messaging.ConsumerConfig{
					Stream: "orders", Durable: "billing", Workers: 4, AckWait: 2 * time.Second,
					Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
				}, handler, messaging.WithStore(store), messaging.WithoutTracing())
				if err != nil {
					t.Fatalf("consumer %d: %v", i, err)
				}
				runCtx, stop := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- c.Run(runCtx) }()
				t.Cleanup(func() {
					stop()
					if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("consumer %d: %v", i, err)
					}
				})
			}

			// The publisher: one message at a time from 4 goroutines,
			// the latency of each publish recorded. A publish in flight on
			// a server that is killed gets no answer: it is retried after
			// the attempt's Timeout, here 1s (5s by default, with which the
			// test passes too, with pauses of 5s), for 20 attempts: the
			// default's window of MaxAttempts × Timeout, 25s.
			pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{Timeout: time.Second, MaxAttempts: 20}, messaging.WithoutTracing())
			if err != nil {
				t.Fatal(err)
			}
			var next, published, retried atomic.Int64
			var pubErr atomic.Pointer[error]
			var slowest sync.Map // phase → longest publish
			var phase atomic.Int32
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(clusterMessages) {
							return
						}
						id := "order-" + strconv.FormatInt(i, 10)
						s := time.Now()
						if _, err := pub.Publish(ctx, "orders.placed", map[string]any{"id": id}, messaging.WithMsgID(id)); err != nil {
							err = fmt.Errorf("publish %s: %w", id, err)
							pubErr.CompareAndSwap(nil, &err)
							return
						}
						d := time.Since(s)
						if d > time.Second { // longer than an attempt's timeout: retried
							retried.Add(1)
						}
						p := phase.Load()
						for {
							old, loaded := slowest.LoadOrStore(p, d)
							if !loaded || old.(time.Duration) >= d || slowest.CompareAndSwap(p, old, d) {
								break
							}
						}
						published.Add(1)
					}
				})
			}
			kill := func(at int64, p int32, stream string) {
				t.Helper()
				vitamintest.Eventually(t, time.Minute, func() error {
					if p := pubErr.Load(); p != nil {
						t.Fatalf("the publisher lost a message: %v", *p)
					}
					if n := published.Load(); n < at {
						return fmt.Errorf("%d published, waiting for %d", n, at)
					}
					return nil
				})
				leader := cl.StreamLeader(t, js, stream)
				phase.Store(p)
				leader.Stop()
				vitamintest.Eventually(t, 30*time.Second, func() error {
					if now := cl.StreamLeader(t, js, stream); now == leader {
						return errors.New(stream + " still led by the stopped server")
					}
					return nil
				})
				leader.Restart(t)
				cl.Healthy(t)
				phase.Store(p + 1)
				t.Logf("%s: leader %s stopped after %d messages and started again after the election, and the cluster is healthy again", stream, leader.Name(), at)
			}
			kill(int64(clusterMessages/3), 1, "orders")
			if kind == "kv" {
				kill(int64(2*clusterMessages/3), 3, "KV_processed")
			}
			wg.Wait()
			if p := pubErr.Load(); p != nil {
				t.Fatalf("the publisher lost a message: %v", *p)
			}
			t.Logf("%d publishes were retried under their message ID (they took longer than an attempt's timeout)", retried.Load())
			slowest.Range(func(k, v any) bool {
				t.Logf("phase %d: the slowest publish took %v", k, v.(time.Duration).Round(time.Millisecond))
				return true
			})
			vitamintest.EventuallyProgressing(t, time.Minute, func() (int, error) {
				rows, keys := count()
				if keys < clusterMessages {
					return keys, fmt.Errorf("%d of %d messages have had their effect (%d effects)", keys, clusterMessages, rows)
				}
				return keys, nil
			})
			if rows, keys := count(); rows != clusterMessages || keys != clusterMessages {
				t.Errorf("%d effects for %d keys, want %d of each", rows, keys, clusterMessages)
			}
			s, err := js.Stream(ctx, "orders")
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != uint64(clusterMessages) {
				t.Errorf("the stream holds %d messages, want %d (each once)", info.State.Msgs, clusterMessages)
			}
		})
	}
}

// TestReplicasTheClusterCannotPlace: a stream or a KV bucket asking for
// more replicas than the servers can hold fails with an error naming the
// field, on a server that is not clustered and on a cluster of three.
func TestReplicasTheClusterCannotPlace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	single, err := jetstream.New(vitamintest.StartNATS(t).Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := jetstream.New(vitamintest.StartNATSCluster(t).Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		js       jetstream.JetStream
		replicas int
	}{{"single server", single, 3}, {"cluster of three", cluster, 5}, {"beyond JetStream's limit", cluster, 7}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := messaging.EnsureStream(ctx, tc.js, messaging.StreamConfig{Name: "r", Subjects: []string{"r.>"}, Replicas: tc.replicas})
			var fe *messaging.FieldError
			if !errors.As(err, &fe) || fe.Field != "StreamConfig.Replicas" || !errors.Is(err, messaging.ErrInvalidConfig) {
				t.Errorf("stream with %d replicas: %v, want a FieldError for StreamConfig.Replicas", tc.replicas, err)
			}
			_, err = messaging.NewKVStore(ctx, tc.js, messaging.KVStoreConfig{Bucket: "r", Replicas: tc.replicas})
			if !errors.As(err, &fe) || fe.Field != "KVStoreConfig.Replicas" {
				t.Errorf("bucket with %d replicas: %v, want a FieldError for KVStoreConfig.Replicas", tc.replicas, err)
			}
		})
	}
}
