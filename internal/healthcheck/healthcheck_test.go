package healthcheck_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/internal/healthcheck"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIsGRPC(t *testing.T) {
	for method, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":  true,
		"/grpc.health.v1.Health/Watch":  true,
		"/grpc.health.v1.Health/List":   true,
		"grpc.health.v1.Health/Check":   true,
		"/grpc.health.v1.Health":        false,
		"/grpc.health.v1.HealthX/Check": false,
		"/grpc.health.v2.Health/Check":  false,
		"/shop.Orders/Get":              false,
		"":                              false,
	} {
		if got := healthcheck.IsGRPC(method); got != want {
			t.Errorf("IsGRPC(%q) = %v, want %v", method, got, want)
		}
	}
}

func TestPathsAreFresh(t *testing.T) {
	p := healthcheck.Paths()
	p[0] = "/changed"
	if healthcheck.Paths()[0] != "/health" {
		t.Fatal("Paths shares its slice with the caller")
	}
}
