package client_test

import (
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/discovery/consul"
	"github.com/vitamin-go/vitamin/vitamintest"
)

func newConsulWatcher(t testing.TB, c *vitamintest.Consul) *consul.Watcher {
	t.Helper()
	w, err := consul.NewWatcher(c.Client, consul.WatcherConfig{WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func newConsulRegistrar(t testing.TB, c *vitamintest.Consul) *consul.Registrar {
	t.Helper()
	r, err := consul.NewRegistrar(c.Client, consul.RegistrarConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
