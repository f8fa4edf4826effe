package discovery

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// Registration describes an instance to announce and how its health is
// checked. It is plain data, safe to copy; a Registration is not changed by
// the registrars that read it.
type Registration struct {
	// Instance is the instance to announce. Service, Address and Port are
	// required; ID defaults to "<service>-<address>-<port>".
	Instance Instance
	// Check says how the backend decides whether the instance is healthy.
	// Nil means no check: the instance counts as healthy while it is
	// registered.
	Check *Check
}

// CheckKind names the kind of a [Check]. It is a string value.
type CheckKind string

// Check kinds.
const (
	CheckNone CheckKind = ""
	CheckTTL  CheckKind = "ttl"
	CheckHTTP CheckKind = "http"
	CheckGRPC CheckKind = "grpc"
)

// Check is a health check. Exactly one of TTL, HTTP and GRPC is set.
//
//   - TTL: the registrar renews the check itself, every TTL/3 by default;
//     when the process stops renewing, the instance turns critical after TTL.
//   - HTTP: the backend's agent sends GET to the URL every Interval; a 2xx
//     answer is passing, 429 is warning, anything else critical.
//   - GRPC: the agent calls grpc.health.v1.Health/Check on "host:port" or
//     "host:port/service" every Interval; SERVING is passing.
//
// Check is plain data, safe to copy.
type Check struct {
	// TTL is how long the check stays passing after each renewal.
	TTL time.Duration
	// HTTP is the absolute http:// or https:// URL the agent probes.
	HTTP string
	// GRPC is the "host:port" or "host:port/service" the agent probes.
	GRPC string
	// GRPCUseTLS makes the gRPC probe use TLS.
	GRPCUseTLS bool
	// TLSSkipVerify skips certificate verification for HTTPS and gRPC TLS
	// probes.
	TLSSkipVerify bool

	// Interval is the time between two probes of an HTTP or gRPC check.
	// Default 10s.
	Interval time.Duration
	// Timeout bounds one probe. Default: the backend's (10s in Consul).
	Timeout time.Duration
	// HeartbeatInterval is the time between two renewals of a TTL check.
	// Default TTL/3. It must be shorter than TTL.
	HeartbeatInterval time.Duration
	// DeregisterCriticalAfter, if set, lets the backend remove the
	// instance after its check has been critical that long (Consul's
	// DeregisterCriticalServiceAfter; Consul's minimum is one minute and
	// its reaper runs every 30 seconds).
	DeregisterCriticalAfter time.Duration
}

// Kind says which kind of check c is; a nil check is CheckNone.
func (c *Check) Kind() CheckKind {
	switch {
	case c == nil:
		return CheckNone
	case c.TTL != 0:
		return CheckTTL
	case c.HTTP != "":
		return CheckHTTP
	case c.GRPC != "":
		return CheckGRPC
	}
	return CheckNone
}

// DefaultCheckInterval is the probe interval of HTTP and gRPC checks that
// do not set one.
const DefaultCheckInterval = 10 * time.Second

// Normalize validates r and returns a copy with defaults filled in: the
// instance ID, the check interval and the heartbeat interval. Tags and Meta
// are copied, so the result does not share memory with r. The error, if
// any, is a *FieldError naming the first bad field; it matches
// [ErrInvalidRegistration].
func (r Registration) Normalize() (Registration, error) {
	in := r.Instance.Clone()
	switch {
	case strings.TrimSpace(in.Service) == "":
		return r, fieldErr("Instance.Service", "service name is empty")
	case strings.ContainsAny(in.Service, "/?#% \t\n"):
		return r, fieldErr("Instance.Service", "service name %q contains a character that is not allowed in a URL path segment", in.Service)
	case strings.TrimSpace(in.Address) == "":
		return r, fieldErr("Instance.Address", "address is empty")
	case strings.ContainsAny(in.Address, " \t\n/"):
		return r, fieldErr("Instance.Address", "address %q is not a host name or IP address", in.Address)
	case in.Port < 1 || in.Port > 65535:
		return r, fieldErr("Instance.Port", "port %d is out of range 1..65535", in.Port)
	}
	if in.ID == "" {
		in.ID = in.Service + "-" + in.Address + "-" + strconv.Itoa(in.Port)
	} else if strings.ContainsAny(in.ID, "/?#% \t\n") {
		return r, fieldErr("Instance.ID", "ID %q contains a character that is not allowed in a URL path segment", in.ID)
	}
	for i, t := range in.Tags {
		if strings.TrimSpace(t) == "" {
			return r, fieldErr("Instance.Tags["+strconv.Itoa(i)+"]", "tag is empty")
		}
	}
	for k := range in.Meta {
		if k == "" {
			return r, fieldErr("Instance.Meta", "metadata key is empty")
		}
	}
	out := Registration{Instance: in}
	if r.Check != nil {
		c, err := r.Check.normalize()
		if err != nil {
			return r, err
		}
		out.Check = &c
	}
	return out, nil
}

func (c *Check) normalize() (Check, error) {
	n := *c
	set := 0
	for _, on := range []bool{c.TTL != 0, c.HTTP != "", c.GRPC != ""} {
		if on {
			set++
		}
	}
	if set != 1 {
		return n, fieldErr("Check", "exactly one of TTL, HTTP and GRPC must be set, got %d", set)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Check.TTL", c.TTL}, {"Check.Interval", c.Interval}, {"Check.Timeout", c.Timeout},
		{"Check.HeartbeatInterval", c.HeartbeatInterval}, {"Check.DeregisterCriticalAfter", c.DeregisterCriticalAfter}} {
		if d.v < 0 {
			return n, fieldErr(d.name, "duration %v is negative", d.v)
		}
	}
	switch c.Kind() {
	case CheckTTL:
		if c.Interval != 0 || c.Timeout != 0 {
			return n, fieldErr("Check.Interval", "a TTL check has no Interval or Timeout; it is renewed every HeartbeatInterval")
		}
		if n.HeartbeatInterval == 0 {
			n.HeartbeatInterval = c.TTL / 3
		}
		if n.HeartbeatInterval <= 0 || n.HeartbeatInterval >= c.TTL {
			return n, fieldErr("Check.HeartbeatInterval", "heartbeat interval %v must be positive and shorter than TTL %v", n.HeartbeatInterval, c.TTL)
		}
		return n, nil
	case CheckHTTP:
		u, err := url.Parse(c.HTTP)
		if err != nil {
			return n, fielderr.New(ErrInvalidRegistration, "Check.HTTP", c.HTTP, "not a URL", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return n, fieldErr("Check.HTTP", "%q is not an absolute http:// or https:// URL", c.HTTP)
		}
	case CheckGRPC:
		hostport, _, _ := strings.Cut(c.GRPC, "/")
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return n, fielderr.New(ErrInvalidRegistration, "Check.GRPC", c.GRPC, "want host:port or host:port/service", err)
		}
		if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
			return n, fieldErr("Check.GRPC", "%q: want host:port with a port in 1..65535", c.GRPC)
		}
	}
	if c.HeartbeatInterval != 0 {
		return n, fieldErr("Check.HeartbeatInterval", "only a TTL check has a heartbeat")
	}
	if n.Interval == 0 {
		n.Interval = DefaultCheckInterval
	}
	return n, nil
}
