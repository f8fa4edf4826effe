package backoff_test

import (
	"fmt"
	"time"

	"github.com/vitamin-go/vitamin/internal/backoff"
)

// The wait doubles after each failure in a row, up to the cap; without
// NoJitter each wait is spread between half and all of it.
func ExampleBackoff_Delay() {
	b := backoff.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, NoJitter: true}
	for n := 1; n <= 5; n++ {
		fmt.Println(n, b.Delay(n))
	}
	// Output:
	// 1 100ms
	// 2 200ms
	// 3 400ms
	// 4 800ms
	// 5 1s
}
