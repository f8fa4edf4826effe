package template

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// vitaminModuleFiles returns the go.mod and go.sum of the Vitamin module
// the project requires: those of the checkout p.Replace, or of the version
// p.Vitamin in the module cache (with go.sum lines for that module
// itself). Either is nil when it cannot be read.
func vitaminModuleFiles(p Params) (goMod, goSum []byte) {
	if p.Replace != "" {
		goMod, _ = os.ReadFile(filepath.Join(p.Replace, "go.mod"))
		goSum, _ = os.ReadFile(filepath.Join(p.Replace, "go.sum"))
		return goMod, goSum
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return nil, nil
	}
	cache := strings.TrimSpace(string(out))
	escaped, err1 := module.EscapePath(vitaminModule)
	ver, err2 := module.EscapeVersion(p.Vitamin)
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	download := filepath.Join(cache, "cache", "download", escaped, "@v", ver)
	goMod, err = os.ReadFile(download + ".mod")
	if err != nil {
		return nil, nil
	}
	goSum, _ = os.ReadFile(filepath.Join(cache, escaped+"@"+ver, "go.sum"))
	zipHash, err1 := os.ReadFile(download + ".ziphash")
	modHash, err2 := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(goMod)), nil
	})
	if err1 == nil && err2 == nil {
		own := fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", vitaminModule, p.Vitamin, bytes.TrimSpace(zipHash), vitaminModule, p.Vitamin, modHash)
		goSum = append([]byte(own), goSum...)
	}
	return goMod, goSum
}

// projectGoMod returns the project's go.mod: the module path, and the
// skeleton's requirements (tmpl) at the versions Vitamin's go.mod
// requires, with Vitamin's other requirements as indirect ones, so that
// the project builds as it is, offline, without go mod tidy. Without
// Vitamin's go.mod (vitamin nil), the skeleton's own versions are used,
// and go mod tidy completes the file.
func projectGoMod(tmpl, vitamin []byte, modulePath string, p Params) ([]byte, error) {
	t, err := modfile.Parse("go.mod.tmpl", tmpl, nil)
	if err != nil {
		return nil, err
	}
	f := &modfile.File{Syntax: &modfile.FileSyntax{}}
	if err := f.AddModuleStmt(modulePath); err != nil {
		return nil, err
	}
	goVersion := t.Go.Version
	versions := map[string]string{}
	var indirect []string
	if vitamin != nil {
		v, err := modfile.Parse("go.mod", vitamin, nil)
		if err != nil {
			return nil, fmt.Errorf("vitamin's go.mod: %w", err)
		}
		if v.Go != nil {
			goVersion = v.Go.Version
		}
		for _, r := range v.Require {
			versions[r.Mod.Path] = r.Mod.Version
			indirect = append(indirect, r.Mod.Path)
		}
	}
	if err := f.AddGoStmt(goVersion); err != nil {
		return nil, err
	}
	for _, r := range t.Require {
		version := r.Mod.Version
		if v, ok := versions[r.Mod.Path]; ok {
			version = v
		}
		if r.Mod.Path == vitaminModule {
			version = p.Vitamin
		}
		f.AddNewRequire(r.Mod.Path, version, false)
		indirect = slices.DeleteFunc(indirect, func(path string) bool { return path == r.Mod.Path })
	}
	for _, path := range indirect {
		f.AddNewRequire(path, versions[path], true)
	}
	f.SetRequireSeparateIndirect(f.Require)
	if p.Replace != "" {
		if err := f.AddReplace(vitaminModule, "", p.Replace, ""); err != nil {
			return nil, err
		}
	}
	f.Cleanup()
	return modfile.Format(f.Syntax), nil
}

// projectGoVersion is the go version of the project's go.mod: Vitamin's,
// else the skeleton's.
func projectGoVersion(skeleton fs.FS, vitamin []byte) (string, error) {
	if vitamin == nil {
		var err error
		if vitamin, err = fs.ReadFile(skeleton, "go.mod.tmpl"); err != nil {
			return "", err
		}
	}
	f, err := modfile.ParseLax("go.mod", vitamin, nil)
	if err != nil {
		return "", err
	}
	if f.Go == nil {
		return "", fmt.Errorf("template: go.mod names no go version")
	}
	return f.Go.Version, nil
}
