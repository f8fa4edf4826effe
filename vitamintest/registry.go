package vitamintest

import (
	"log/slog"

	"github.com/vitamin-go/vitamin/discovery"
)

// Registry is the in-memory service registry, [discovery.Memory]: a
// discovery.Registrar and discovery.Watcher for tests, which can mark
// instances unhealthy or the registry unreachable.
type Registry = discovery.Memory

// RegistryConfig holds the settings of a [Registry]: [discovery.MemoryConfig].
type RegistryConfig = discovery.MemoryConfig

// RegistryOption configures a [Registry]: [discovery.MemoryOption].
type RegistryOption = discovery.MemoryOption

// NewRegistry returns an empty registry; see [discovery.NewMemory].
func NewRegistry(cfg RegistryConfig, opts ...RegistryOption) (*Registry, error) {
	return discovery.NewMemory(cfg, opts...)
}

// WithLogger makes the registry log self-preservation decisions and
// reachability changes to l; see [discovery.WithLogger].
func WithLogger(l *slog.Logger) RegistryOption { return discovery.WithLogger(l) }
