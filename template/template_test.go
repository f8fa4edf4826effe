package template_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/template"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// repoRoot is the Vitamin checkout the tests run in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestNewRewrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "orders")
	files, err := (&template.Template{}).New(dir, template.Params{ModulePath: "example.com/shop/order-service/v2", Replace: repoRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cmd/orderservice/main.go", "api/orderservice/v1/orderservice.proto", "go.mod", "go.sum", template.ManifestFile} {
		if !contains(files, want) {
			t.Errorf("no %s among the files written: %v", want, files)
		}
	}
	m, err := template.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "orderservice" || m.ModulePath != "example.com/shop/order-service/v2" {
		t.Errorf("manifest: name %q, module %q", m.Name, m.ModulePath)
	}
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, left := range []string{"skeleton", "Skeleton", "SKELETON"} {
			if name != "go.sum" && strings.Contains(string(data), left) {
				t.Errorf("%s still says %q", name, left)
			}
		}
		if name != template.ManifestFile && name != "go.sum" && m.Files[name] == "" {
			t.Errorf("%s has no hash in the manifest", name)
		}
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	for _, want := range []string{"module example.com/shop/order-service/v2\n", "github.com/vitamin-go/vitamin v0.0.0\n", "replace github.com/vitamin-go/vitamin => " + repoRoot(t)} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod does not say %q:\n%s", want, gomod)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestNewBadInput: each bad input fails with an error naming it, and
// nothing is written.
func TestNewBadInput(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, module, dir, field string
	}{
		{"empty module path", "", "", "ModulePath"},
		{"invalid module path", "example.com/orders service", "", "ModulePath"},
		{"trailing slash", "example.com/orders/", "", "ModulePath"},
		{"no dot in the first element", "orders", "", "ModulePath"},
		{"name starts with a digit", "example.com/2fa", "", "Name"},
		{"name is a keyword", "example.com/func", "", "Name"},
		{"non-empty directory", "example.com/orders", full, "Dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if dir == "" {
				dir = filepath.Join(t.TempDir(), "new")
			}
			_, err := (&template.Template{}).New(dir, template.Params{ModulePath: tt.module, Replace: repoRoot(t)})
			var fe *template.FieldError
			if !errors.Is(err, template.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("New(%q): %v, want a FieldError on %s behind ErrInvalid", tt.module, err, tt.field)
			}
			entries, _ := os.ReadDir(dir)
			if tt.dir == "" && entries != nil {
				t.Errorf("%s was written: %v", dir, entries)
			}
			if tt.dir != "" && len(entries) != 1 {
				t.Errorf("%s changed: %v", dir, entries)
			}
		})
	}
}

func TestNameOf(t *testing.T) {
	for path, want := range map[string]string{
		"example.com/orders":               "orders",
		"example.com/order-service":        "orderservice",
		"github.com/acme/Billing_API/v3":   "billingapi",
		"example.com/team/payments.v1/cmd": "cmd",
	} {
		if got, err := template.NameOf(path); err != nil || got != want {
			t.Errorf("NameOf(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
}

// changed returns the skeleton with some files replaced or added.
func changed(t *testing.T, edits map[string]string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(template.Skeleton(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(template.Skeleton(), name)
		m[name] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range edits {
		m[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return m
}

// TestUpgrade generates at one template version, edits one file, changes
// the template, and upgrades: the unedited file is replaced, the edited one
// kept with the new version beside it, and a dry run writes nothing.
func TestUpgrade(t *testing.T) {
	dir := t.TempDir()
	v1 := &template.Template{FS: changed(t, nil), Version: "v1"}
	if _, err := v1.New(dir, template.Params{ModulePath: "example.com/orders", Replace: repoRoot(t)}); err != nil {
		t.Fatal(err)
	}
	ours := "# our own README\n"
	write(t, dir, "README.md", ours)
	write(t, dir, "config.yaml", "# our own config\n") // v2 does not change it

	v2 := &template.Template{FS: changed(t, map[string]string{
		"README.md":           "# skeleton, v2\n",
		"Makefile":            "# the v2 Makefile of skeleton\n",
		"deploy/k8s/new.yaml": "kind: skeleton\n",
	}), Version: "v2"}

	dry, err := v2.Upgrade(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md"+template.BesideSuffix)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dry run wrote README.md.new (%v)", err)
	}
	if got := read(t, dir, "Makefile"); strings.Contains(got, "v2") {
		t.Error("the dry run replaced the Makefile")
	}

	u, err := v2.Upgrade(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dry, u); diff != "" {
		t.Errorf("the dry run announced another upgrade (-dry +done):\n%s", diff)
	}
	type lists struct{ Replaced, Beside, Added, Kept []string }
	want := lists{[]string{"Makefile"}, []string{"README.md"}, []string{"deploy/k8s/new.yaml"}, []string{"config.yaml"}}
	if diff := cmp.Diff(want, lists{u.Replaced, u.Beside, u.Added, u.Kept}); diff != "" {
		t.Errorf("upgrade (-want +got):\n%s", diff)
	}
	if u.From != "v1" || u.To != "v2" {
		t.Errorf("upgrade from %q to %q, want v1 to v2", u.From, u.To)
	}
	if got := read(t, dir, "Makefile"); got != "# the v2 Makefile of orders\n" {
		t.Errorf("Makefile = %q, want v2's", got)
	}
	if got := read(t, dir, "README.md"); got != ours {
		t.Errorf("README.md = %q: the team's version was overwritten", got)
	}
	if got := read(t, dir, "README.md"+template.BesideSuffix); got != "# orders, v2\n" {
		t.Errorf("README.md.new = %q, want v2's", got)
	}
	if got := read(t, dir, "deploy/k8s/new.yaml"); got != "kind: orders\n" {
		t.Errorf("new.yaml = %q", got)
	}
	m, err := template.ReadManifest(dir)
	if err != nil || m.Template != "v2" {
		t.Errorf("manifest after upgrade: %q, %v; want v2", m.Template, err)
	}

	// Once the team takes the new version, the next upgrade has nothing
	// to do; a file the team deleted stays deleted, upgrade after upgrade.
	write(t, dir, "README.md", read(t, dir, "README.md"+template.BesideSuffix))
	if err := os.Remove(filepath.Join(dir, ".dockerignore")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		again, err := v2.Upgrade(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Replaced)+len(again.Beside)+len(again.Added) != 0 || !contains(again.Unchanged, "README.md") ||
			!contains(again.Deleted, ".dockerignore") {
			t.Errorf("upgrade again: %+v, want nothing to do and .dockerignore left deleted", again)
		}
	}
}

func TestUpgradeNotAProject(t *testing.T) {
	_, err := (&template.Template{}).Upgrade(t.TempDir(), true)
	if !errors.Is(err, template.ErrInvalid) || !strings.Contains(err.Error(), template.ManifestFile) {
		t.Errorf("Upgrade of a directory without manifest: %v", err)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestNewFromModuleCache: for a released Vitamin (go run
// github.com/vitamin-go/vitamin/cmd/vitamin@v0.9.0), go.mod and go.sum
// come from that version in the module cache, with go.sum lines for the
// Vitamin module itself.
func TestNewFromModuleCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("GOMODCACHE", cache)
	download := filepath.Join(cache, "cache", "download", "github.com", "vitamin-go", "vitamin", "@v")
	src := filepath.Join(cache, "github.com", "vitamin-go", "vitamin@v0.9.0")
	for _, d := range []string{download, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, download, "v0.9.0.mod", "module github.com/vitamin-go/vitamin\n\ngo 1.26.9\n\nrequire google.golang.org/grpc v1.99.0\n\nrequire golang.org/x/net v0.70.0 // indirect\n")
	write(t, download, "v0.9.0.ziphash", "h1:ZIPHASH=\n")
	write(t, src, "go.sum", "google.golang.org/grpc v1.99.0 h1:GRPC=\n")

	dir := t.TempDir()
	if _, err := (&template.Template{}).New(dir, template.Params{ModulePath: "example.com/orders", Vitamin: "v0.9.0"}); err != nil {
		t.Fatal(err)
	}
	gomod := read(t, dir, "go.mod")
	for _, want := range []string{"go 1.26.9\n", "\tgithub.com/vitamin-go/vitamin v0.9.0\n", "\tgoogle.golang.org/grpc v1.99.0\n", "golang.org/x/net v0.70.0 // indirect\n"} {
		if !strings.Contains(gomod, want) {
			t.Errorf("go.mod does not say %q:\n%s", want, gomod)
		}
	}
	if strings.Contains(gomod, "replace") {
		t.Errorf("go.mod has a replace directive:\n%s", gomod)
	}
	gosum := read(t, dir, "go.sum")
	want := "github.com/vitamin-go/vitamin v0.9.0 h1:ZIPHASH=\ngithub.com/vitamin-go/vitamin v0.9.0/go.mod h1:"
	if !strings.HasPrefix(gosum, want) || !strings.HasSuffix(gosum, "google.golang.org/grpc v1.99.0 h1:GRPC=\n") {
		t.Errorf("go.sum:\n%s", gosum)
	}
	if !strings.Contains(read(t, dir, "Dockerfile"), "ARG GO_VERSION=1.26.9\n") {
		t.Error("the Dockerfile does not build on go.mod's Go version, 1.26.9")
	}
}

// TestNewLeavesOutBuildOutput: what make build or make proto leave in the
// skeleton's directory (bin/), and files an upgrade wrote beside others,
// are not part of the template.
func TestNewLeavesOutBuildOutput(t *testing.T) {
	tmpl := &template.Template{FS: changed(t, map[string]string{"bin/skeleton": "ELF", "Makefile.new": "x"})}
	dir := t.TempDir()
	files, err := tmpl.New(dir, template.Params{ModulePath: "example.com/orders", Replace: repoRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasPrefix(f, "bin/") || strings.HasSuffix(f, ".new") {
			t.Errorf("%s was generated", f)
		}
	}
}
