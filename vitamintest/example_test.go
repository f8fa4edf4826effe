package vitamintest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/discovery"
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

// A registry in memory registers instances and watches them, with the same
// interfaces as the Consul backend.
func ExampleRegistry() {
	ctx := context.Background()
	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		panic(err)
	}
	defer reg.Close()

	r, err := reg.Register(ctx, discovery.Registration{
		Instance: discovery.Instance{
			Service: "orders", Address: "10.0.0.7", Port: 8080,
			Meta: map[string]string{discovery.MetaVersion: "1.4.0"},
		},
	})
	if err != nil {
		panic(err)
	}

	w, err := reg.Watch(ctx, "orders", discovery.WithMeta(discovery.MetaVersion, "1.4.0"))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	s, err := w.Next(ctx)
	if err != nil {
		panic(err)
	}
	for _, in := range s.Instances {
		fmt.Println(in.ID, in.Endpoint(), "stale:", s.Stale)
	}

	if err := r.Deregister(ctx); err != nil {
		panic(err)
	}
	// Output:
	// orders-10.0.0.7-8080 10.0.0.7:8080 stale: false
}
