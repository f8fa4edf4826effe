package discovery_test

import (
	"context"
	"fmt"

	"github.com/vitamin-go/vitamin/discovery"
)

// Bad input is rejected with an error naming the field.
func ExampleRegistration_Normalize() {
	_, err := discovery.Registration{
		Instance: discovery.Instance{Service: "orders", Address: "10.0.0.7", Port: 70000},
	}.Normalize()
	fmt.Println(err)
	// Output:
	// discovery: invalid registration: Instance.Port: port 70000 is out of range 1..65535
}

// A backend that may have lost its state (here: it answers again after
// failing, with nothing) tells its guard; the guard holds the last good
// set until the instances are back.
func ExampleGuard_Restarted() {
	g, err := discovery.NewGuard(discovery.SelfPreservation{}) // RestartGrace 5s
	if err != nil {
		panic(err)
	}
	a := discovery.Instance{ID: "orders-a", Service: "orders", Address: "10.0.0.1", Port: 80}
	b := discovery.Instance{ID: "orders-b", Service: "orders", Address: "10.0.0.2", Port: 80}
	g.Observe([]discovery.Instance{a, b})

	g.Restarted()
	for _, answer := range [][]discovery.Instance{nil, {b}, {a, b}} {
		v := g.Observe(answer)
		fmt.Printf("answer %d, serve %d, held %v, restored %v\n", len(answer), len(v.Serve), v.Held, v.Restored)
	}
	// Output:
	// answer 0, serve 2, held true, restored false
	// answer 1, serve 2, held true, restored false
	// answer 2, serve 2, held false, restored true
}

// A service and its caller in one process find each other through the
// in-memory registry.
func ExampleNewMemory() {
	reg, err := discovery.NewMemory(discovery.MemoryConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
	ctx := context.Background()
	w, _ := reg.Watch(ctx, "orders")
	defer w.Close()
	h, _ := reg.Register(ctx, discovery.Registration{Instance: discovery.Instance{
		ID: "orders-1", Service: "orders", Address: "127.0.0.1", Port: 8080}})
	for {
		s, _ := w.Next(ctx)
		if len(s.Instances) > 0 {
			fmt.Println(s.Instances[0].Endpoint())
			break
		}
	}
	_ = h.Deregister(ctx)
	// Output: 127.0.0.1:8080
}
