package healthcheck_test

import (
	"fmt"

	"github.com/vitamin-go/vitamin/internal/healthcheck"
)

// The gRPC health service's methods are health checks; other methods are not.
func ExampleIsGRPC() {
	fmt.Println(healthcheck.IsGRPC("/grpc.health.v1.Health/Watch"), healthcheck.IsGRPC("/shop.Orders/Get"))
	fmt.Println(healthcheck.Paths()[0])
	// Output:
	// true false
	// /health
}
