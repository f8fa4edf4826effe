package fielderr_test

import (
	"errors"
	"fmt"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// A package makes its field errors behind its own sentinel; callers match
// the sentinel and read the field.
func ExampleNew() {
	errInvalidConfig := errors.New("orders: invalid configuration")
	err := fielderr.New(errInvalidConfig, "Config.Workers", -1, "must be at least 1", nil)

	var fe *fielderr.Error
	fmt.Println(errors.Is(err, errInvalidConfig), errors.As(err, &fe), fe.Field)
	fmt.Println(err)
	// Output:
	// true true Config.Workers
	// orders: invalid configuration: Config.Workers = -1: must be at least 1
}
