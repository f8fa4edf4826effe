package messaging

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig describes a stream that EnsureStream creates or updates.
// It is plain data, safe to copy and to read concurrently.
type StreamConfig struct {
	// Name is the stream's name. Required.
	Name string
	// Subjects the stream captures. Required.
	Subjects []string
	// Duplicates is the window in which a second publish with the same
	// Nats-Msg-Id is dropped by the broker. Default 2 minutes.
	Duplicates time.Duration
	// MaxAge is how long messages are kept; 0 (the default) keeps them
	// until other limits remove them.
	MaxAge time.Duration
	// Memory keeps the stream in memory instead of on disk (the default).
	Memory bool
	// Replicas is the number of copies in a cluster. Default 1.
	Replicas int
}

func (c StreamConfig) jetstream() (jetstream.StreamConfig, error) {
	if c.Name == "" {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Name is required")
	}
	if len(c.Subjects) == 0 {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Subjects must name at least one subject")
	}
	if c.Duplicates < 0 || c.MaxAge < 0 || c.Replicas < 0 {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Duplicates, MaxAge and Replicas must not be negative")
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.MaxAge > 0 && c.Duplicates > c.MaxAge {
		return jetstream.StreamConfig{}, invalid("StreamConfig.Duplicates (%v) must not exceed MaxAge (%v)", c.Duplicates, c.MaxAge)
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
	s, err := js.CreateOrUpdateStream(ctx, jcfg)
	if err == nil {
		return s, nil
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
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
