package messaging

import (
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestConsumeStall reproduces nats.go's Consume stall, which needs many
// passes to show (about one in a hundred here): set
// VITAMIN_MESSAGING_STALL_PASSES, for example to 300. Each pass consumes
// 21,000 messages as the raw benchmark does (64 per pull, 8 goroutines
// acknowledging). A pass stalls when the client stops pulling: the server
// then has messages pending and no pull request waiting. With nats.go's
// default heartbeat (15s) the missed-heartbeat timer ends it after 30s;
// with the Consumer's pullHeartbeat after 2s. The test checks that
// diagnosis: every stall it sees has no pull request waiting on the
// server, and it ends with a missed-heartbeat error and a new pull.
func TestConsumeStall(t *testing.T) {
	passes, _ := strconv.Atoi(os.Getenv("VITAMIN_MESSAGING_STALL_PASSES"))
	if passes < 1 {
		t.Skip("set VITAMIN_MESSAGING_STALL_PASSES=300 to reproduce the nats.go Consume stall")
	}
	heartbeat := pullHeartbeat
	if os.Getenv("VITAMIN_MESSAGING_STALL_DEFAULT_HEARTBEAT") != "" {
		heartbeat = 15 * time.Second // nats.go's default for PullExpiry 30s
	}
	e := newEnv(t)
	ctx := testCtx(t)
	const n = 21000
	p, err := NewPublisher(e.js, PublisherConfig{MaxPending: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := p.PublishAsync(ctx, "events.stall", order{ID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stalls := 0
	for pass := range passes {
		cons, err := e.js.CreateOrUpdateConsumer(ctx, "events", jetstream.ConsumerConfig{
			Durable: "stall" + strconv.Itoa(pass), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var got, missed atomic.Int64
		work := make(chan jetstream.Msg, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for m := range work {
					_ = m.Ack()
					got.Add(1)
				}
			})
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { work <- m }, jetstream.PullMaxMessages(64), jetstream.PullHeartbeat(heartbeat),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					missed.Add(1)
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		last, since, stalled := int64(0), time.Now(), false
		for got.Load() < n {
			time.Sleep(10 * time.Millisecond)
			if g := got.Load(); g != last {
				if stalled && missed.Load() == 0 {
					t.Errorf("pass %d: the stall ended without a missed heartbeat", pass)
				}
				last, since, stalled = g, time.Now(), false
				continue
			}
			if !stalled && time.Since(since) > heartbeat && missed.Load() == 0 {
				info, err := cons.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				stalled = true
				stalls++
				t.Logf("pass %d: stalled at %d of %d messages: server num_pending %d, num_ack_pending %d, num_waiting %d",
					pass, last, n, info.NumPending, info.NumAckPending, info.NumWaiting)
				if info.NumWaiting != 0 || info.NumPending == 0 {
					t.Errorf("pass %d: a stall with pull requests waiting or nothing pending is another problem", pass)
				}
			}
		}
		cc.Stop()
		<-cc.Closed()
		close(work)
		wg.Wait()
	}
	t.Logf("%d stalls in %d passes", stalls, passes)
}
