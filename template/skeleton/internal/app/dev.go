//go:build !production

package app

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/vitamin-go/vitamin/discovery"
)

// devRegistry is the in-memory discovery of a service run alone.
func devRegistry() (Registry, error) { return discovery.NewMemory(discovery.MemoryConfig{}) }

// devBroker is a NATS server with JetStream embedded in the process, for a
// service run alone: its store is a temporary directory, removed by close.
type devBroker struct {
	url   string
	close func()
}

func startDevBroker() (*devBroker, error) {
	dir, err := os.MkdirTemp("", "skeleton-nats-")
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true, ServerName: "skeleton-dev",
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS: not ready within 10s")
	}
	return &devBroker{url: ns.ClientURL(), close: func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}}, nil
}
