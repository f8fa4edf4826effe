package messaging

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/internal/backoff"
	"github.com/vitamin-go/vitamin/internal/fielderr"
)

// StreamConfig describes a stream that EnsureStream creates or updates.
// It is plain data, safe to copy and to read concurrently.
type StreamConfig struct {
	// Name is the stream's name. Required.
	Name string `yaml:"name" json:"name"`
	// Subjects the stream captures. Required.
	Subjects []string `yaml:"subjects" json:"subjects"`
	// Duplicates is the window in which a second publish with the same
	// Nats-Msg-Id is dropped by the broker. Default 2 minutes.
	Duplicates time.Duration `yaml:"duplicates,omitempty" json:"duplicates,omitempty"`
	// MaxAge is how long messages are kept; 0 (the default) keeps them
	// until other limits remove them.
	MaxAge time.Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
	// Memory keeps the stream in memory instead of on disk (the default).
	Memory bool `yaml:"memory,omitempty" json:"memory,omitempty"`
	// Replicas is the number of copies in a cluster. Default 1.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
}

func (c StreamConfig) jetstream() (jetstream.StreamConfig, error) {
	if c.Name == "" {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Name", nil, "is required")
	}
	if len(c.Subjects) == 0 {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Subjects", nil, "must name at least one subject")
	}
	if err := cmp.Or(
		notNegative("StreamConfig.Duplicates", c.Duplicates),
		notNegative("StreamConfig.MaxAge", c.MaxAge),
		notNegative("StreamConfig.Replicas", c.Replicas),
	); err != nil {
		return jetstream.StreamConfig{}, err
	}
	if c.Replicas > maxReplicas {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Replicas", c.Replicas, "must be at most 5 (JetStream's limit)")
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.MaxAge > 0 && c.Duplicates > c.MaxAge {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Duplicates", c.Duplicates, fmt.Sprintf("must not exceed MaxAge (%v)", c.MaxAge))
	}
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:       c.Name,
		Subjects:   c.Subjects,
		Duplicates: c.Duplicates,
		MaxAge:     c.MaxAge,
		Storage:    storage,
		Replicas:   max(c.Replicas, 1),
	}, nil
}

// EnsureStream creates the stream, or updates an existing one to cfg. When
// the existing stream cannot take the new configuration (a different
// storage type, subjects that overlap another stream, ...) it returns a
// *StreamConflictError naming the fields that differ.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	jcfg, err := cfg.jetstream()
	if err != nil {
		return nil, err
	}
	var s jetstream.Stream
	err = jsAPI(ctx, func(ctx context.Context) (err error) {
		s, err = js.CreateOrUpdateStream(ctx, jcfg)
		return err
	})
	if err == nil {
		return s, nil
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil, err
	}
	if err := replicasError("StreamConfig.Replicas", jcfg.Replicas, apiErr); err != nil {
		return nil, err
	}
	conflict := &StreamConflictError{Stream: cfg.Name, Err: err}
	if existing, ierr := js.Stream(ctx, cfg.Name); ierr == nil {
		old := existing.CachedInfo().Config
		if old.Storage != jcfg.Storage {
			conflict.Fields = append(conflict.Fields, "Memory")
		}
		if !slices.Equal(old.Subjects, jcfg.Subjects) {
			conflict.Fields = append(conflict.Fields, "Subjects")
		}
		if old.Duplicates != jcfg.Duplicates {
			conflict.Fields = append(conflict.Fields, "Duplicates")
		}
		if old.MaxAge != jcfg.MaxAge {
			conflict.Fields = append(conflict.Fields, "MaxAge")
		}
		if old.Replicas != jcfg.Replicas {
			conflict.Fields = append(conflict.Fields, "Replicas")
		}
	} else if errors.Is(ierr, jetstream.ErrStreamNotFound) {
		conflict.Fields = []string{"Subjects"} // creation failed: the subjects overlap another stream
	}
	return nil, conflict
}

// apiAttemptTimeout bounds one JetStream API request of EnsureStream,
// NewConsumer and NewKVStore: JetStream drops a request it cannot queue
// (its API queue full on a busy server), which then gets no answer at all.
const apiAttemptTimeout = 5 * time.Second

// apiWindow bounds the attempts of jsAPI when ctx has no deadline.
const apiWindow = 30 * time.Second

// jsAPI runs request, one JetStream API request, again while it fails in a
// way that goes away by itself (no answer, no responders, JetStream not
// available yet, a peer offline while a cluster settles) until ctx ends,
// or for apiWindow when ctx has no deadline. It returns the last error.
func jsAPI(ctx context.Context, request func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiWindow)
		defer cancel()
	}
	return retryAttempts(ctx, apiAttemptTimeout, apiRetryable, request)
}

// retryAttempts runs attempt, each time bounded by attemptTimeout, until it
// succeeds, fails in a way retryable does not accept, or ctx ends, waiting
// between attempts with backoff. It returns the last error.
func retryAttempts(ctx context.Context, attemptTimeout time.Duration, retryable func(error) bool, attempt func(context.Context) error) error {
	b := backoff.Backoff{Initial: 50 * time.Millisecond, Max: time.Second}
	for n := 1; ; n++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		if err == nil || !retryable(err) || !backoff.Sleep(ctx, b.Delay(n)) {
			return err
		}
	}
}

// apiRetryable reports whether a JetStream API request may succeed if
// made again: it got no answer, nobody answered, JetStream was not
// available (503), or a peer was offline (JetStream's "no suitable peers
// for placement, peer offline", as right after a cluster starts). Refusals
// of the request itself (a conflict, a bad configuration) are final.
func apiRetryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 ||
			apiErr.ErrorCode == jsNoSuitablePeers && strings.Contains(apiErr.Description, "peer offline")
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// maxReplicas is JetStream's limit on the replicas of a stream.
const maxReplicas = 5

// JetStream's error codes for replicas it cannot place.
const (
	jsReplicasNotSupported = 10074 // replicas > 1 on a server that is not clustered
	jsInsufficientResource = 10023
	jsNoSuitablePeers      = 10005
)

// replicasError returns a *FieldError naming field when JetStream refused
// replicas it cannot place (more than the cluster has servers, or a server
// that is not clustered), or nil for any other error.
func replicasError(field string, replicas int, apiErr *jetstream.APIError) error {
	if replicas <= 1 {
		return nil
	}
	switch apiErr.ErrorCode {
	case jsReplicasNotSupported, jsInsufficientResource, jsNoSuitablePeers:
		return fielderr.New(ErrInvalidConfig, field, replicas,
			fmt.Sprintf("the NATS cluster cannot place %d replicas (is it clustered, with at least %d JetStream servers?)", replicas, replicas), apiErr)
	}
	return nil
}
