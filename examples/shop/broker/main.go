package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4222", "host:port to listen on")
	store := flag.String("store", "", "JetStream store directory (required)")
	flag.Parse()
	if *store == "" {
		log.Fatal("broker: -store is required")
	}
	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatalf("broker: -addr %q: %v", *addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		log.Fatalf("broker: -addr %q: port: %v", *addr, err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "shop-broker",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
	})
	if err != nil {
		log.Fatalf("broker: %v", err)
	}
	srv.ConfigureLogger()
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("broker: not ready for connections after 10s")
	}
	fmt.Fprintf(os.Stderr, "broker: JetStream ready on nats://%s\n", *addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Shutdown()
	srv.WaitForShutdown()
}
