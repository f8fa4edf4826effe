package template

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// BesideSuffix ends the name of the file Upgrade writes beside a file the
// team has changed: the template's new version of main.go is main.go.new.
const BesideSuffix = ".new"

// Upgrade says what Upgrade did, or would do with dryRun: each list holds
// paths relative to the project, slash-separated, sorted.
type Upgrade struct {
	// From and To are the template versions before and after.
	From, To string
	// Replaced are the files the team had not changed, replaced with the
	// template's new version.
	Replaced []string
	// Beside are the files the team changed (or that the template did not
	// write) for which the template has a new version: it is written
	// beside them, with BesideSuffix, and the file itself is left alone.
	Beside []string
	// Added are the files new in the template.
	Added []string
	// Unchanged are the files whose content already is the template's.
	Unchanged []string
	// Kept are the files the team changed whose template version did not
	// change: there is nothing new to offer, they are left alone.
	Kept []string
	// Deleted are files of the template the team deleted: left deleted.
	Deleted []string
	// Dropped are files the template no longer has: left as they are.
	Dropped []string
}

// Upgrade brings the project in dir to this template. A file that is as
// the template generated it (its hash is the manifest's) is replaced with
// the new version; a file the team changed is never overwritten: the new
// version is written beside it (name + BesideSuffix). The manifest then
// records the new version and hashes. With dryRun nothing is written.
//
// The project's go.mod requires the Vitamin version this program was
// built from when it is a release, else the version the manifest names.
func (t *Template) Upgrade(dir string, dryRun bool) (*Upgrade, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	r, err := newRenamer(m.ModulePath)
	if err != nil {
		return nil, err
	}
	p := Params{ModulePath: m.ModulePath, Vitamin: m.Vitamin, Replace: m.Replace}
	if v := buildVersion(); v != "(devel)" {
		p.Vitamin = v
	}
	files, err := t.render(r, p)
	if err != nil {
		return nil, err
	}
	version, err := t.version()
	if err != nil {
		return nil, err
	}
	u := &Upgrade{From: m.Template, To: version}
	next := Manifest{Template: u.To, ModulePath: m.ModulePath, Name: r.name, Vitamin: p.Vitamin, Replace: p.Replace, Files: map[string]string{}}
	writes := map[string][]byte{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		data, newHash := files[name], hash(files[name])
		recorded, tracked := m.Files[name]
		current, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		switch {
		case errors.Is(err, fs.ErrNotExist) && tracked:
			u.Deleted = append(u.Deleted, name)
			next.Files[name] = recorded // still deleted by the team next time
			continue
		case errors.Is(err, fs.ErrNotExist):
			u.Added = append(u.Added, name)
			writes[name] = data
		case err != nil:
			return nil, err
		case hash(current) == newHash:
			u.Unchanged = append(u.Unchanged, name)
		case tracked && recorded == newHash:
			u.Kept = append(u.Kept, name)
		case tracked && hash(current) == recorded:
			u.Replaced = append(u.Replaced, name)
			writes[name] = data
		default:
			u.Beside = append(u.Beside, name)
			writes[name+BesideSuffix] = data
		}
		next.Files[name] = newHash
	}
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		if _, ok := files[name]; !ok {
			u.Dropped = append(u.Dropped, name)
		}
	}
	if dryRun {
		return u, nil
	}
	for _, name := range slices.Sorted(maps.Keys(writes)) {
		if err := writeFile(dir, name, writes[name]); err != nil {
			return u, err
		}
	}
	return u, writeManifest(dir, next)
}
