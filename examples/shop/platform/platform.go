package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/messaging"
	"github.com/vitamin-go/vitamin/service"
	"github.com/vitamin-go/vitamin/service/admin"
)

// Config is the service settings of the shop's service name listening on
// 127.0.0.1:port as instance id (default "<name>-<port>"); Consul's
// address comes from CONSUL_HTTP_ADDR, telemetry from the OTEL_* variables.
func Config(name, id string, port int) service.Config {
	if id == "" {
		id = fmt.Sprintf("%s-%d", name, port)
	}
	return service.Config{
		Name:       name,
		InstanceID: id,
		Version:    "1.0.0",
		HTTPAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Check:      service.Check{Interval: time.Second, Timeout: time.Second},
		// The operator's page of each instance, on a free port (the
		// instance logs it), so that the instances on one machine do not
		// compete for the default admin port.
		Admin: admin.Config{Addr: "127.0.0.1:0"},
	}
}

// JetStream connects svc to the broker at NATS_URL (retrying while it is
// not up yet, reconnecting for ever), creates or updates the streams, and
// hands the connection to svc, which closes it on the way out (after the
// consumers have stopped and the publishers have flushed).
func JetStream(ctx context.Context, svc *service.Service, streams []messaging.StreamConfig) (jetstream.JetStream, error) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		for _, sc := range streams {
			if _, err = messaging.EnsureStream(ctx, js, sc); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = svc.Add(service.WithCloser(service.CloseFunc(func(context.Context) error { nc.Close(); return nil })))
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// WriteJSON answers with v as JSON and the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
