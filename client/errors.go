package client

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

var (
	// ErrInvalidConfig is matched (with errors.Is) by every error about a
	// bad Config field or option given to a constructor. The concrete
	// error is a *FieldError naming the field or option.
	ErrInvalidConfig = errors.New("client: invalid configuration")

	// ErrNoInstances is matched by the error of a call that found no
	// instance to go to: the service has none, none is reachable, or none
	// is in the subset the call was pinned to. The concrete error is a
	// *NoInstancesError; gRPC calls fail with status UNAVAILABLE and its
	// message.
	ErrNoInstances = errors.New("client: no instances")

	// ErrClosed is returned by requests sent through a Transport after
	// its Close.
	ErrClosed = errors.New("client: closed")
)

// FieldError names a bad setting of a constructor — a Config field such
// as "Config.Balancing.Outlier.MaxEjectedShare", an option such as
// "WithWatcher", or the service name — with the offending value, the
// reason and the cause, if any. It matches ErrInvalidConfig with
// errors.Is. It is not modified after it is returned, so it is safe for
// concurrent use.
type FieldError = fielderr.Error

// invalid returns a *FieldError behind ErrInvalidConfig.
func invalid(field string, value any, reason string) error {
	return fielderr.New(ErrInvalidConfig, field, value, reason, nil)
}

// NoInstancesError is the error of a call that found no instance of Service
// to go to. It matches ErrNoInstances with errors.Is and carries the gRPC
// status UNAVAILABLE. It is not modified after it is returned, so it is
// safe for concurrent use.
type NoInstancesError struct {
	// Service is the called service.
	Service string
	// Subset describes the subset the call was limited to, such as
	// "version=v2"; empty when the call could go to any instance.
	Subset string
	// Reason says why there was none: "no instances" (none known, or none
	// in the subset) or "no reachable instance" (all unreachable).
	Reason string
}

// Error names the service, the subset, if any, and the reason.
func (e *NoInstancesError) Error() string {
	s := "client: " + e.Reason + " of service " + `"` + e.Service + `"`
	if e.Subset != "" {
		s += " with " + e.Subset
	}
	return s
}

// Is reports whether target is ErrNoInstances.
func (e *NoInstancesError) Is(target error) bool { return target == ErrNoInstances }

// GRPCStatus returns the status UNAVAILABLE with the error's message.
func (e *NoInstancesError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}
