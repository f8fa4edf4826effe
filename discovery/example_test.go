package discovery_test

import (
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
