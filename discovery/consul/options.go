package consul

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// ErrNotConfirmed is returned by a registration's Deregister when the
// instance was removed from the agent but the bound passed before the
// health endpoint stopped listing it. Draining can go ahead; watchers will
// see the change late.
var ErrNotConfirmed = errors.New("consul: deregistration not confirmed by the health endpoint")

// Option configures a [Registrar] or a [Watcher] with something only code
// can give; it is applied once, by the constructor.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger logs registrations, re-registrations, reachability changes,
// index resets and self-preservation decisions to l. Nil (the default) is
// silent.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

func buildOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// isNotFound reports whether err is the agent saying it does not know a
// service or check ("unknown service ID", "Unknown check ID"): it answers
// such requests with 404.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}
