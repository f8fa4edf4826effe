// Command skeleton runs the skeleton service.
//
//	go run ./cmd/skeleton                      alone: in-memory discovery, embedded NATS
//	CONSUL_HTTP_ADDR=127.0.0.1:8500 NATS_URL=nats://127.0.0.1:4222 go run ./cmd/skeleton
//
// The configuration is config.yaml (or -config FILE), overridden by
// Consul KV under config/skeleton/ and by SKELETON_* variables. The
// domain is package items; package app wires it into a service.Service.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/vitamin-go/vitamin/template/skeleton/internal/app"
)

func main() {
	file := flag.String("config", "config.yaml", "the configuration file")
	flag.Parse()
	ctx := context.Background()
	svc, err := app.New(ctx, *file) // a *service.Service: the domain, its settings, its servers
	if err == nil {
		err = svc.Run(ctx) // until SIGTERM or SIGINT, then the ordered stop
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "skeleton:", err)
		os.Exit(1)
	}
}
