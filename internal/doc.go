// Package internal holds code shared by Vitamin's own packages that users do
// not import: the one backoff ([github.com/vitamin-go/vitamin/internal/backoff]),
// the one field-error shape ([github.com/vitamin-go/vitamin/internal/fielderr]),
// the one telemetry seam ([github.com/vitamin-go/vitamin/internal/telemetry]),
// the one Consul blocking-query loop
// ([github.com/vitamin-go/vitamin/internal/consulquery]) and the one list of
// health-check requests ([github.com/vitamin-go/vitamin/internal/healthcheck]).
// The test kit users and Vitamin's own tests share is public:
// [github.com/vitamin-go/vitamin/vitamintest].
package internal
