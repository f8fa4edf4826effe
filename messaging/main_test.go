package messaging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/vitamintest"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(runChild(kind))
	}
	goleak.VerifyTestMain(m)
}

// env is one test's NATS server, a connection and the streams "events"
// (subjects events.>) and "deadletters" (deadletter.>).
type env struct {
	t   *testing.T
	srv *vitamintest.NATS
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := vitamintest.StartNATS(t)
	e := &env{t: t, srv: srv}
	e.nc = srv.Connect(t)
	e.js = newJS(t, e.nc)
	ctx := testCtx(t)
	if _, err := EnsureStream(ctx, e.js, StreamConfig{Name: "events", Subjects: []string{"events.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureStream(ctx, e.js, StreamConfig{Name: "deadletters", Subjects: []string{"deadletter.>"}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func newJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastConfig is a consumer configuration with short timings, so that
// redeliveries come quickly.
func fastConfig(durable string) ConsumerConfig {
	return ConsumerConfig{
		Stream: "events", Durable: durable, Workers: 4,
		AckWait: 300 * time.Millisecond, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		MaxDeliver: 20,
	}
}

// run starts c.Run in a goroutine; the returned function stops it
// gracefully and reports Run's error. It is also registered as cleanup.
func run(t testing.TB, c *Consumer) func() {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
			if err := <-errc; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// settled waits until the durable consumer has nothing pending or
// unacknowledged. Each request has its own short deadline, so that one
// lost during a reconnect is retried.
func settled(t testing.TB, js jetstream.JetStream, stream, durable string, timeout time.Duration) {
	t.Helper()
	vitamintest.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, stream, durable)
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("pending %d, ack pending %d, redelivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

// streamMsgs returns the number of messages in a stream.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	var n uint64
	vitamintest.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		n = info.State.Msgs
		return nil
	})
	return n
}

// deadLetters reads every message on the dead-letter stream.
func deadLetters(t testing.TB, js jetstream.JetStream, want int) []jetstream.Msg {
	t.Helper()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := streamMsgs(t, js, "deadletters"); n < uint64(want) {
			return fmt.Errorf("%d dead letters, want %d", n, want)
		}
		return nil
	})
	ctx := testCtx(t)
	cons, err := js.OrderedConsumer(ctx, "deadletters", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
		t.Fatal(batch.Error())
	}
	return msgs
}

// counter counts side effects per key. It is safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(k string) {
	c.mu.Lock()
	c.n[k]++
	c.mu.Unlock()
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func (c *counter) keys() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

// withBeforeAck runs f after the idempotency mark and before the ack; when
// f returns false the ack is skipped, as if it was lost.
func withBeforeAck(f func(*Message) bool) ConsumerOption {
	return consumerOption(func(o *consumerOptions) { o.beforeAck = f })
}
