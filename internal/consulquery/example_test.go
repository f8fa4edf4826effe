package consulquery_test

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/vitamin-go/vitamin/internal/consulquery"
)

// A caller loops on Next and decides what each round means for it. Here the
// query stands in for KV().List: the first answer, then a blocking query
// whose wait ran out without a change.
func ExampleLoop() {
	answers := []uint64{42, 42}
	query := func(ctx context.Context, q *api.QueryOptions) (uint64, *api.QueryMeta, error) {
		fmt.Println("query from index", q.WaitIndex)
		idx := answers[0]
		answers = answers[1:]
		return idx, &api.QueryMeta{LastIndex: idx}, nil
	}
	l := consulquery.New(consulquery.Config{AllowStale: true}, query)
	for range 2 {
		r, ok := l.Next(context.Background())
		if !ok {
			return
		}
		fmt.Println("answer", r.Answer, "changed:", r.Changed)
	}
	// Output:
	// query from index 0
	// answer 42 changed: true
	// query from index 42
	// answer 42 changed: false
}
