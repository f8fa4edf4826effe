package telemetry_test

import (
	"fmt"

	"go.opentelemetry.io/otel"

	"github.com/vitamin-go/vitamin/internal/telemetry"
)

// Global follows the OpenTelemetry globals, so a library that took it
// before tracing.Setup reports to what Setup installs.
func ExampleGlobal() {
	t := telemetry.Global()
	fmt.Println(t.TracerProvider() == otel.GetTracerProvider())
	// Output:
	// true
}
