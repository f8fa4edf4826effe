package client_test

import (
	"reflect"
	"testing"

	"github.com/vitamin-go/vitamin/client"
)

// TestOptionsApplyWhereTheyBelong lists which constructor each option
// applies to. An option that does not apply to a constructor does not
// implement its option type, so passing it there does not compile, e.g.
// "client.HTTPOption does not implement client.GRPCOption (missing method
// applyGRPC)".
func TestOptionsApplyWhereTheyBelong(t *testing.T) {
	grpcOpt, httpOpt := reflect.TypeFor[client.GRPCOption](), reflect.TypeFor[client.HTTPOption]()
	for _, tc := range []struct {
		name       string
		opt        any
		grpc, http bool // it applies to NewGRPC, to NewHTTP and NewTransport
	}{
		{"WithWatcher", client.WithWatcher(nil), true, true},
		{"WithPolicies", client.WithPolicies(nil), true, true},
		{"WithCaller", client.WithCaller("checkout"), true, true},
		{"WithLogger", client.WithLogger(nil), true, true},
		{"WithMeterProvider", client.WithMeterProvider(nil), true, true},
		{"WithoutTracing", client.WithoutTracing(), true, true},
		{"WithDialOptions", client.WithDialOptions(), true, false},
		{"WithGRPCTracing", client.WithGRPCTracing(), true, false},
		{"WithBaseTransport", client.WithBaseTransport(nil), false, true},
		{"WithHTTPTracing", client.WithHTTPTracing(), false, true},
		{"WithRetryNonIdempotent", client.WithRetryNonIdempotent(), false, true},
	} {
		typ := reflect.TypeOf(tc.opt)
		if got := typ.Implements(grpcOpt); got != tc.grpc {
			t.Errorf("%s applies to NewGRPC: %v, want %v", tc.name, got, tc.grpc)
		}
		if got := typ.Implements(httpOpt); got != tc.http {
			t.Errorf("%s applies to NewHTTP: %v, want %v", tc.name, got, tc.http)
		}
	}
}
