package messaging

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestServerRestartMidStream restarts the NATS server while messages are
// published and consumed: both resume, and no message is lost or handled
// twice.
func TestServerRestartMidStream(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	const n = 300
	effects := newCounter()
	c, err := NewConsumer(ctx, e.js, fastConfig("restart"), Typed(func(ctx context.Context, m *Message, o order) error {
		effects.add(m.Key)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, c)

	p, err := NewPublisher(e.js, PublisherConfig{MaxAttempts: 100, Timeout: time.Second, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	published, half, restarting := make(chan error, 1), make(chan struct{}), make(chan struct{})
	go func() {
		for i := range n {
			if i == n/3 {
				close(half)
				<-restarting // publish the rest while the server goes down and up
			}
			if _, err := p.Publish(ctx, "events.restart", order{ID: strconv.Itoa(i)}, WithMsgID("r-"+strconv.Itoa(i))); err != nil {
				published <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
		published <- nil
	}()

	<-half
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if got := effects.keys(); got < n/6 {
			return fmt.Errorf("%d messages handled before the restart", got)
		}
		return nil
	})
	close(restarting)
	e.srv.Restart(t)

	if err := <-published; err != nil {
		t.Fatal(err)
	}
	vitamintest.Eventually(t, 30*time.Second, func() error {
		if got := effects.keys(); got < n {
			return fmt.Errorf("%d of %d messages handled after the restart", got, n)
		}
		return nil
	})
	settled(t, e.js, "events", "restart", 30*time.Second)
	stop()
	if got := streamMsgs(t, e.js, "events"); got != n {
		t.Errorf("stream holds %d messages, want %d (one per message ID)", got, n)
	}
	for i := range n {
		if got := effects.get("r-" + strconv.Itoa(i)); got != 1 {
			t.Errorf("r-%d handled %d times, want once", i, got)
		}
	}
}
