package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/resilience"
)

func TestFanOutPartialResults(t *testing.T) {
	reg := newRegistry(t)
	g := startGRPC(t, "inventory-1")
	register(t, reg, g.instance("inventory", nil))
	h := startHTTP(t, "prices-1")
	h.fail.Store(true)
	register(t, reg, h.instance("prices", nil))

	conn, err := client.NewGRPC(context.Background(), "inventory", client.Config{}, client.WithWatcher(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prices, err := client.NewHTTP("prices", client.Config{}, client.WithWatcher(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseHTTP(prices)

	// Every call waits until all have started: a sequential fan-out
	// would never get past the first.
	var started sync.WaitGroup
	started.Add(3)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	together := func(ctx context.Context) error {
		started.Done()
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	errDown := errors.New("reviews down")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := client.FanOut(ctx,
		client.Call{Name: "inventory", Do: func(ctx context.Context) (any, error) {
			if err := together(ctx); err != nil {
				return nil, err
			}
			return "in stock", check(ctx, conn)
		}},
		client.Call{Name: "prices", Do: func(ctx context.Context) (any, error) {
			if err := together(ctx); err != nil {
				return nil, err
			}
			code, _, err := get(prices, http.MethodGet, "http://prices/v1/prices/42", nil)
			if err == nil && code != http.StatusOK {
				err = &resilience.StatusError{StatusCode: code}
			}
			return "live price", err
		}, Fallback: func(ctx context.Context, cause error) (any, error) {
			return "cached price", nil
		}},
		client.Call{Name: "reviews", Do: func(ctx context.Context) (any, error) {
			if err := together(ctx); err != nil {
				return nil, err
			}
			return nil, errDown
		}},
	)
	if r, _ := rs.Get("inventory"); r.Err != nil || r.Value != "in stock" {
		t.Errorf("inventory: %+v", r)
	}
	if r, _ := rs.Get("prices"); r.Err != nil || !r.FellBack || r.Value != "cached price" || r.Cause == nil {
		t.Errorf("prices: %+v, want the fallback's value and the cause", r)
	}
	if r, _ := rs.Get("reviews"); !errors.Is(r.Err, errDown) {
		t.Errorf("reviews: %+v", r)
	}
	var ce *client.CallError
	if err := rs.Err(); !errors.As(err, &ce) || ce.Name != "reviews" || !errors.Is(err, errDown) {
		t.Errorf("Err() = %v, want the reviews call's error only", err)
	}
}
