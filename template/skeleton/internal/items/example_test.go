package items_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/vitamin-go/vitamin/template/skeleton/internal/items"
)

// When pricing cannot answer, an item gets the default price, marked
// estimated; its creation is published either way.
func ExampleService_Create() {
	down := &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("no instances of pricing")
	})}
	publish := func(_ context.Context, e items.ItemCreatedEvent) error {
		fmt.Println("published", items.ItemCreated, e.Name, e.PriceCents)
		return nil
	}
	s := items.New(slog.New(slog.DiscardHandler), items.Defaults(), down, func() int { return 100 }, publish)
	item, err := s.Create(context.Background(), "tea")
	fmt.Println(item.Name, item.PriceCents, item.PriceEstimated, err)
	// Output:
	// published skeleton.item.created tea 100
	// tea 100 true <nil>
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
