package template

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

//go:embed all:skeleton
var embedded embed.FS

// Skeleton returns the skeleton the vitamin command generates projects
// from: the files under template/skeleton of the Vitamin module.
func Skeleton() fs.FS {
	sub, err := fs.Sub(embedded, "skeleton")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}

// ErrInvalid is matched (with errors.Is) by every error about input that
// New or Upgrade cannot use: a module path, a directory, a name. The
// concrete error is a *FieldError naming what is wrong.
var ErrInvalid = errors.New("template: invalid input")

// FieldError names the input at fault (ModulePath, Dir, Name…), behind
// ErrInvalid.
type FieldError = fielderr.Error

// Template is a skeleton and its version: what New generates from and
// Upgrade upgrades to. A Template is plain data, safe for concurrent use.
type Template struct {
	// FS holds the skeleton's files. Default: Skeleton().
	FS fs.FS
	// Version names this version of the template in the project's
	// manifest. Default: the version of the Vitamin module the program was
	// built from ("(devel)" in a checkout), with a hash of the skeleton's
	// files.
	Version string
}

// Params say what to generate.
type Params struct {
	// ModulePath is the new project's module path, such as
	// "example.com/orders". Its last element (without a /vN suffix) names
	// the service: "orders". Required.
	ModulePath string
	// Vitamin is the version of Vitamin the project requires, such as
	// "v0.3.0". Default: the version the program was built from; required
	// when that is a development build, unless Replace is given.
	Vitamin string
	// Replace is the directory of a Vitamin checkout: the project's go.mod
	// gets a replace directive to it, and requires v0.0.0 unless Vitamin
	// says otherwise.
	Replace string
}

// Manifest is the record of a generation, kept in the project as
// ManifestFile: the template version, the parameters, and the SHA-256 of
// each generated file as it was written, so that Upgrade can tell the
// files the team changed from those it did not.
type Manifest struct {
	Template   string            `json:"template"`
	ModulePath string            `json:"module_path"`
	Name       string            `json:"name"`
	Vitamin    string            `json:"vitamin"`
	Replace    string            `json:"replace,omitempty"`
	Files      map[string]string `json:"files"`
}

// ManifestFile is where a generated project keeps its Manifest.
const ManifestFile = ".vitamin.json"

const (
	skeletonModule = "github.com/vitamin-go/vitamin/template/skeleton"
	placeholder    = "skeleton"
	vitaminModule  = "github.com/vitamin-go/vitamin"
)

func (t *Template) fsys() fs.FS {
	if t == nil || t.FS == nil {
		return Skeleton()
	}
	return t.FS
}

// version returns t.Version, or the build's version and a hash of the
// skeleton's files.
func (t *Template) version() (string, error) {
	if t != nil && t.Version != "" {
		return t.Version, nil
	}
	h := sha256.New()
	err := fs.WalkDir(t.fsys(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(t.fsys(), name)
		fmt.Fprintf(h, "%s %x\n", name, sha256.Sum256(data))
		return err
	})
	return buildVersion() + "+" + hex.EncodeToString(h.Sum(nil))[:12], err
}

// buildVersion is the version of the Vitamin module the program was built
// from: a release tag, or "(devel)".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == vitaminModule && bi.Main.Version != "" {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == vitaminModule && d.Replace == nil {
				return d.Version
			}
		}
	}
	return "(devel)"
}

// New generates a project for p into dir, which must not exist or be
// empty, and returns the files written (slash-separated, relative to dir).
// Bad input (an invalid module path, a name that is no Go identifier, a
// directory with files in it) fails with a *FieldError behind ErrInvalid,
// and nothing is written.
func (t *Template) New(dir string, p Params) ([]string, error) {
	r, err := newRenamer(p.ModulePath)
	if err != nil {
		return nil, err
	}
	if p.Vitamin == "" {
		switch v := buildVersion(); {
		case v != "(devel)":
			p.Vitamin = v
		case p.Replace != "":
			p.Vitamin = "v0.0.0"
		default:
			return nil, fielderr.New(ErrInvalid, "Vitamin", nil,
				"this program is a development build of Vitamin: give the version to require, or a checkout to replace it with", nil)
		}
	}
	if p.Replace != "" {
		abs, err := filepath.Abs(p.Replace)
		if err != nil {
			return nil, fielderr.New(ErrInvalid, "Replace", p.Replace, "cannot be made absolute", err)
		}
		if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
			return nil, fielderr.New(ErrInvalid, "Replace", p.Replace, "is not a module directory (no go.mod)", err)
		}
		p.Replace = abs
	}
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	files, err := t.render(r, p)
	if err != nil {
		return nil, err
	}
	version, err := t.version()
	if err != nil {
		return nil, err
	}
	m := Manifest{
		Template: version, ModulePath: p.ModulePath, Name: r.name,
		Vitamin: p.Vitamin, Replace: p.Replace, Files: map[string]string{},
	}
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		if err := writeFile(dir, name, files[name]); err != nil {
			return nil, err
		}
		m.Files[name] = hash(files[name])
	}
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	names = append(names, ManifestFile)
	if _, sum := vitaminModuleFiles(p); sum != nil {
		if err := writeFile(dir, "go.sum", sum); err != nil {
			return nil, err
		}
		names = append(names, "go.sum")
	}
	return names, nil
}

// checkEmpty fails unless dir does not exist or is an empty directory.
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fielderr.New(ErrInvalid, "Dir", dir, "cannot be read", err)
	case len(entries) > 0:
		return fielderr.New(ErrInvalid, "Dir", dir, fmt.Sprintf("is not empty (it holds %s): choose a new directory", entries[0].Name()), nil)
	}
	return nil
}

// render returns the project's files: the skeleton's, renamed and
// rewritten for p.
func (t *Template) render(r *renamer, p Params) (map[string][]byte, error) {
	out := map[string][]byte{}
	vitaminMod, _ := vitaminModuleFiles(p)
	goVersion, err := projectGoVersion(t.fsys(), vitaminMod)
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(t.fsys(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && name == "bin":
			return fs.SkipDir // what make build and make proto leave in the skeleton
		case d.IsDir() || strings.HasSuffix(name, BesideSuffix):
			return nil
		}
		data, err := fs.ReadFile(t.fsys(), name)
		if err != nil {
			return err
		}
		target := r.path(name)
		switch {
		case name == "go.mod.tmpl":
			target = "go.mod"
			if data, err = projectGoMod(data, vitaminMod, r.modulePath, p); err != nil {
				return fmt.Errorf("template: %s: %w", name, err)
			}
		case name == "Dockerfile":
			data = dockerGoVersion.ReplaceAll(r.text(data), []byte("${1}"+goVersion))
		case strings.HasSuffix(name, ".pb.go"):
			if data, err = r.pbGo(data); err != nil {
				return fmt.Errorf("template: %s: %w", name, err)
			}
		default:
			data = r.text(data)
		}
		if strings.HasSuffix(target, ".go") {
			if data, err = format.Source(data); err != nil {
				return fmt.Errorf("template: %s: %w", target, err)
			}
		}
		out[target] = data
		return nil
	})
	return out, err
}

// dockerGoVersion is the Dockerfile's line that names the Go version to
// build with: New sets it to the go version of the project's go.mod.
var dockerGoVersion = regexp.MustCompile(`(?m)^(ARG GO_VERSION=).*$`)

func writeFile(dir, name string, data []byte) error {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

func writeManifest(dir string, m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(data, '\n'), 0o644)
}

// ReadManifest reads the Manifest of the project in dir.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return m, fielderr.New(ErrInvalid, "Dir", dir, "holds no "+ManifestFile+": not a project generated by vitamin new", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fielderr.New(ErrInvalid, ManifestFile, nil, "cannot be decoded", err)
	}
	return m, nil
}

func hash(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
