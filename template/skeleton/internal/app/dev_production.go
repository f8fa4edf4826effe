//go:build production

package app

import "errors"

// A production build (-tags production) has neither in-memory discovery
// nor an embedded broker: without Consul or NATS configured, the service
// fails to start and says what is missing.

func devRegistry() (Registry, error) {
	return nil, errors.New("no Consul agent configured (service.consul.address or CONSUL_HTTP_ADDR): a production build has no in-memory discovery")
}

type devBroker struct {
	url   string
	close func()
}

func startDevBroker() (*devBroker, error) {
	return nil, errors.New("no NATS server configured (nats.url or NATS_URL): a production build has no embedded broker")
}
