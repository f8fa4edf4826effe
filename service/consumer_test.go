package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestMessageInFlightAtSIGTERMIsFinishedAndAcked sends SIGTERM to a
// consumer process while its handler works on a message: the handler
// finishes, the message is acknowledged, and nothing is left to be
// delivered again into a second effect.
func TestMessageInFlightAtSIGTERMIsFinishedAndAcked(t *testing.T) {
	broker := vitamintest.StartNATS(t)
	js, err := jetstream.New(broker.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := messaging.EnsureStream(ctx, js, messaging.StreamConfig{Name: testStream, Subjects: []string{testSubject}}); err != nil {
		t.Fatal(err)
	}
	effects := filepath.Join(t.TempDir(), "effects")
	c := startChild(t, "consumer", "consume", envNATS+"="+broker.URL, envEffect+"="+effects, envDelay+"=1s")
	c.Await(t, "READY", 30*time.Second)

	pub, err := messaging.NewPublisher(js, messaging.PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(ctx)
	if _, err := pub.Publish(ctx, testSubject, map[string]string{"order": "o-1"}, messaging.WithMsgID("o-1")); err != nil {
		t.Fatal(err)
	}
	if id := c.Await(t, "HANDLING", 30*time.Second); id != "o-1" {
		t.Fatalf("handling %q, want o-1", id)
	}
	sent := time.Now()
	c.Signal(t, syscall.SIGTERM)
	if code := c.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("consumer exited with status %d after SIGTERM, want 0", code)
	}
	t.Logf("consumer: SIGTERM → exit %v with a message in flight; phases %v", time.Since(sent).Round(time.Millisecond), phases(c))

	b, err := os.ReadFile(effects)
	if err != nil {
		t.Fatalf("the handler's effect: %v", err)
	}
	if got := strings.Fields(string(b)); len(got) != 1 || got[0] != "o-1" {
		t.Fatalf("effects %q, want one, of o-1", got)
	}
	cons, err := js.Consumer(ctx, testStream, "effects")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 1 || info.NumAckPending != 0 || info.NumRedelivered != 0 || info.NumPending != 0 {
		t.Fatalf("consumer after the stop: ack floor %d, ack pending %d, redelivered %d, pending %d; want the message acked and nothing to deliver again",
			info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered, info.NumPending)
	}
}
