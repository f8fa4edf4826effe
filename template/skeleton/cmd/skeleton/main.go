// Command skeleton runs the skeleton service.
//
//	go run ./cmd/skeleton                      alone: in-memory discovery, embedded NATS
//	CONSUL_HTTP_ADDR=127.0.0.1:8500 NATS_URL=nats://127.0.0.1:4222 go run ./cmd/skeleton
//
// The configuration is config.yaml (or -config FILE), overridden by
// Consul KV under config/skeleton/ and by SKELETON_* variables.
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
	if err := app.Run(context.Background(), *file); err != nil {
		fmt.Fprintln(os.Stderr, "skeleton:", err)
		os.Exit(1)
	}
}
