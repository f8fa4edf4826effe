package deps_test

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const module = "github.com/vitamin-go/vitamin/"

var (
	consul = "github.com/hashicorp/consul"
	nats   = "github.com/nats-io/"
	grpc   = "google.golang.org/grpc"
	// The OpenTelemetry SDK and exporters belong to the application that
	// calls tracing.Setup; libraries use the API only.
	otelSDK       = "go.opentelemetry.io/otel/sdk"
	otelExporters = "go.opentelemetry.io/otel/exporters"
)

// rules says, for each package, which import path prefixes may not appear
// among its dependencies (tests excluded: they may use anything).
var rules = []struct {
	pkg       string
	forbidden []string
}{
	{"resilience", []string{consul, nats, grpc, otelSDK, otelExporters}},
	{"discovery", []string{consul, nats, grpc, otelSDK, otelExporters}},
	{"config", []string{consul, nats, grpc, otelSDK, otelExporters}},
	{"messaging", []string{consul, grpc, otelSDK, otelExporters}},
	{"client", []string{consul, nats, otelSDK, otelExporters}},
	{"tracing/tracinggrpc", []string{consul, nats, otelSDK, otelExporters}},
	{"tracing/tracinghttp", []string{consul, nats, grpc, otelSDK, otelExporters}},
	{"tracing/tracingnats", []string{consul, grpc, otelSDK, otelExporters}},
}

func TestPackagesKeepTheirDependenciesLight(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", module+r.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) == 0 || deps[len(deps)-1] != module+r.pkg {
				t.Fatalf("go list -deps %s did not list the package itself:\n%s", r.pkg, out)
			}
			for _, d := range deps {
				for _, f := range r.forbidden {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s depends on %s; it must not depend on anything under %s (move the adapter to a subpackage)", r.pkg, d, f)
					}
				}
			}
		})
	}
}

// TestExamplesUseOnlyPublicPackages keeps every Example of a public package
// copyable: a reader can import whatever its example_test.go files import.
func TestExamplesUseOnlyPublicPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.Dir}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, dir := range strings.Fields(string(out)) {
		if strings.Contains(dir+string(filepath.Separator), string(filepath.Separator)+"internal"+string(filepath.Separator)) {
			continue // internal packages' Examples document them for Vitamin's developers only
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*example*_test.go"))
		for _, f := range files {
			checked++
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			for _, imp := range file.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if strings.Contains(p, "/internal/") || strings.HasSuffix(p, "/internal") {
					t.Errorf("%s imports %s: Examples must build only on public packages, or readers cannot copy them", fset.Position(imp.Pos()), p)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no example_test.go files to check")
	}
}
