package template_test

import (
	"bytes"
	"fmt"
	"go/format"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/template"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestGeneratedProject generates a project against this checkout (a
// replace directive), builds, vets and tests it offline (GOPROXY=off:
// everything comes from the module cache, as the go.sum that New writes
// allows), then runs its binary alone: it starts on in-memory discovery
// and an embedded broker, answers its health endpoints and its API, and
// stops cleanly on SIGTERM.
func TestGeneratedProject(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a generated project: skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		vitamintest.Missing(t, "the go command", "a Go installation on PATH")
	}
	dir := filepath.Join(t.TempDir(), "orders")
	began := time.Now()
	if _, err := (&template.Template{}).New(dir, template.Params{ModulePath: "example.com/orders", Replace: repoRoot(t)}); err != nil {
		t.Fatal(err)
	}
	env := projectEnv()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("go", "build", "./...")
	run("go", "vet", "./...")
	run("go", "test", "-count=1", "./...")
	t.Logf("from New to a green go test ./...: %v", time.Since(began).Round(100*time.Millisecond))
	run("go", "vet", "-tags", "production", "./...")
	unformatted(t, dir)
	dockerfile, gomod := read(t, dir, "Dockerfile"), read(t, dir, "go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)[1]
	if !strings.Contains(dockerfile, "ARG GO_VERSION="+goVersion+"\n") {
		t.Errorf("the Dockerfile does not build on go %s, the version of go.mod", goVersion)
	}

	bin := filepath.Join(t.TempDir(), "orders")
	run("go", "build", "-o", bin, "./cmd/orders")
	var logs vitamintest.Buffer
	cmd := exec.Command(bin)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &logs, &logs
	cmd.Env = append(env, "ORDERS_SERVICE_HTTP__ADDR=127.0.0.1:0", "ORDERS_SERVICE_GRPC__ADDR=127.0.0.1:0",
		"ORDERS_SERVICE_ADMIN_ADDR=127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the service's log:\n%s", logs.String())
		}
	})

	started := regexp.MustCompile(`msg="service: started".* http=(\S+)`)
	var base string
	vitamintest.Eventually(t, 30*time.Second, func() error {
		m := started.FindStringSubmatch(logs.String())
		if m == nil {
			return fmt.Errorf("the service has not logged its start")
		}
		base = "http://" + m[1]
		return nil
	})
	for _, want := range []string{`discovery="in memory`, `messaging="embedded NATS at nats://127.0.0.1:`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the service does not say what it runs on (%s)", want)
		}
	}
	for _, path := range []string{"/livez", "/readyz"} {
		vitamintest.Eventually(t, 10*time.Second, func() error { return get(base+path, nil) })
	}
	resp, err := http.Post(base+"/v1/items", "application/json", strings.NewReader(`{"name":"tea"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/items: %s", resp.Status)
	}
	vitamintest.Eventually(t, 10*time.Second, func() error {
		var body bytes.Buffer
		if err := get(base+"/v1/stats", &body); err != nil {
			return err
		}
		if !strings.Contains(body.String(), `"items_created":1`) {
			return fmt.Errorf("stats %s: the consumer has not counted the item", body.String())
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(45 * time.Second): // beyond Shutdown.Total, 28s
		t.Fatal("the service did not stop within 45s of SIGTERM")
	}
	if !strings.Contains(logs.String(), `msg="service: stopped"`) {
		t.Error(`the service did not log "service: stopped"`)
	}
}

// projectEnv is the environment of the go commands and the binary: offline,
// outside any workspace, without the settings of a Consul or NATS the
// machine may have, with the consul binary of this checkout, if any.
func projectEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "GOPROXY", name == "GOWORK", name == "CONSUL_HTTP_ADDR", name == "NATS_URL", strings.HasPrefix(name, "ORDERS_"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GOPROXY=off", "GOWORK=off")
	if bin, err := vitamintest.ConsulBinary(); err == nil {
		env = append(env, vitamintest.ConsulBinEnv+"="+bin) // the project's Consul test runs too
	}
	return env
}

func get(url string, body *bytes.Buffer) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if body != nil {
		_, _ = body.ReadFrom(resp.Body)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// unformatted fails for each Go file of dir that gofmt would change.
func unformatted(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if out, err := format.Source(src); err != nil || !bytes.Equal(out, src) {
			t.Errorf("%s is not gofmt-formatted (%v)", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
