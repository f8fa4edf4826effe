package vitamintest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// A broker restart keeps what JetStream stored. In a test, pass the test's
// t instead of a Detached.
func ExampleStartNATS() {
	t := vitamintest.NewDetached("example")
	defer t.Close()
	ctx := context.Background()

	n := vitamintest.StartNATS(t)
	js, _ := jetstream.New(n.Connect(t))
	_, _ = js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	_, _ = js.Publish(ctx, "orders.created", []byte("order 42"))

	n.Restart(t)

	var msg *jetstream.RawStreamMsg
	vitamintest.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "ORDERS")
		if err == nil {
			msg, err = s.GetMsg(ctx, 1)
		}
		return err
	})
	fmt.Printf("%s: %s\n", msg.Subject, msg.Data)
	// Output:
	// orders.created: order 42
}
