package attempt_test

import (
	"context"
	"fmt"

	"github.com/vitamin-go/vitamin/internal/attempt"
)

type stall struct{ ended bool }

func (s *stall) Stall() bool {
	if s.ended {
		return false
	}
	s.ended = true
	return true
}

// A transport finds the attempt's Stall in the attempt's context and ends
// a stuck attempt with it; the policy then retries it.
func ExampleFrom() {
	s := &stall{}
	ctx := context.WithValue(context.Background(), attempt.Key{}, attempt.Stall(s))
	if st := attempt.From(ctx); st != nil {
		fmt.Println(st.Stall(), st.Stall())
	}
	fmt.Println(attempt.From(context.Background()) == nil)
	// Output:
	// true false
	// true
}
