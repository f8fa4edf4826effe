package discovery_test

import (
	"context"
	"fmt"

	"github.com/vitamin-go/vitamin/discovery"
)

// A registry in memory registers instances and watches them, with the same
// interfaces as the Consul backend.
func ExampleRegistry() {
	ctx := context.Background()
	reg, err := discovery.NewRegistry()
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

// Bad input is rejected with an error naming the field.
func ExampleRegistration_Normalize() {
	_, err := discovery.Registration{
		Instance: discovery.Instance{Service: "orders", Address: "10.0.0.7", Port: 70000},
	}.Normalize()
	fmt.Println(err)
	// Output:
	// discovery: invalid registration: Instance.Port: port 70000 is out of range 1..65535
}
