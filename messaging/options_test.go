package messaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// misapplied uses each option where it applies, then passes a Publisher
// option to NewConsumer and a Consumer option to NewPublisher.
const misapplied = `package optioncheck

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/messaging"
)

func use(ctx context.Context, js jetstream.JetStream, h messaging.Handler) {
	_, _ = messaging.NewPublisher(js, messaging.PublisherConfig{}, messaging.WithCaller("orders"), messaging.WithLogger(nil), messaging.WithoutTracing())
	_, _ = messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{}, h, messaging.WithStore(nil), messaging.WithKeyFunc(nil), messaging.WithLogger(nil), messaging.WithTracing())
	_, _ = messaging.NewConsumer(ctx, js, messaging.ConsumerConfig{}, h, messaging.WithCaller("billing"))
	_, _ = messaging.NewPublisher(js, messaging.PublisherConfig{}, messaging.WithStore(nil))
}
`

// TestMisappliedOptionDoesNotCompile compiles a package that passes
// WithCaller to NewConsumer and WithStore to NewPublisher, and expects the
// compiler to refuse exactly those two calls. The package is added to the
// module through an overlay (go build -overlay), so nothing is written to
// the source tree.
func TestMisappliedOptionDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	src := filepath.Join(tmp, "check.go")
	if err := os.WriteFile(src, []byte(misapplied), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay, _ := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(here, "internal", "optioncheck", "check.go"): src},
	})
	overlayFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, "build", "-overlay", overlayFile, "./internal/optioncheck")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("a Publisher option passed to NewConsumer compiled")
	}
	t.Logf("go build says:\n%s", out)
	want := []*regexp.Regexp{
		regexp.MustCompile(`check\.go:14:\d+: cannot use messaging\.WithCaller\("billing"\) \(value of interface type messaging\.PublisherOption\) as messaging\.ConsumerOption value in argument to messaging\.NewConsumer: messaging\.PublisherOption does not implement messaging\.ConsumerOption \(missing method applyConsumer\)`),
		regexp.MustCompile(`check\.go:15:\d+: cannot use messaging\.WithStore\(nil\) \(value of interface type messaging\.ConsumerOption\) as messaging\.PublisherOption value in argument to messaging\.NewPublisher: messaging\.ConsumerOption does not implement messaging\.PublisherOption \(missing method applyPublisher\)`),
	}
	var errs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "check.go:") {
			errs = append(errs, line)
		}
	}
	if len(errs) != len(want) {
		t.Fatalf("%d compile errors, want %d (only the two misapplied options):\n%s", len(errs), len(want), out)
	}
	for i, re := range want {
		if !re.MatchString(errs[i]) {
			t.Errorf("compile error %d:\n%s\nwant it to match\n%s", i+1, errs[i], re)
		}
	}
}
