package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vitamin-go/vitamin/template"
)

const newUsage = `usage: vitamin new [-vitamin VERSION] [-replace DIR] [-no-tidy] <module-path> [dir]

Generates a service from Vitamin's template into dir (default: the last
element of the module path), which must not exist or be empty.
`

// runNew carries out vitamin new.
func runNew(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("vitamin new", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, newUsage); fl.PrintDefaults() }
	vitamin := fl.String("vitamin", "", "the Vitamin version to require (default: this tool's)")
	replace := fl.String("replace", "", "a Vitamin checkout for a replace directive in go.mod")
	noTidy := fl.Bool("no-tidy", false, "do not run go mod tidy afterwards")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() < 1 || fl.NArg() > 2 {
		fl.Usage()
		return 2
	}
	modulePath, dir := fl.Arg(0), fl.Arg(1)
	if dir == "" {
		name, err := template.NameOf(modulePath)
		if err != nil {
			fmt.Fprintln(stderr, "vitamin new:", err)
			return 2
		}
		dir = name
	}
	files, err := (&template.Template{}).New(dir, template.Params{ModulePath: modulePath, Vitamin: *vitamin, Replace: *replace})
	if err != nil {
		fmt.Fprintln(stderr, "vitamin new:", err)
		if errors.Is(err, template.ErrInvalid) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "created %s in %s (%d files)\n", modulePath, dir, len(files))
	if !*noTidy {
		tidy := exec.Command("go", "mod", "tidy")
		tidy.Dir = dir
		if out, err := tidy.CombinedOutput(); err != nil {
			fmt.Fprintf(stdout, "go mod tidy did not finish (%v); go.mod lists all of Vitamin's requirements, so the project builds as it is; run go mod tidy when online to trim it:\n%s", err, indent(out))
		}
	}
	name, _ := template.NameOf(modulePath)
	fmt.Fprintf(stdout, "\n  cd %s\n  go run ./cmd/%s   # runs alone: in-memory discovery, embedded NATS\n  go test ./...\n", filepath.Clean(dir), name)
	return 0
}

const upgradeUsage = `usage: vitamin upgrade [-dry-run] [dir]

Upgrades the project in dir (default .) to this tool's template: files you
have not changed are replaced; next to each file you changed, the new
version is written as <file>.new.
`

// runUpgrade carries out vitamin upgrade.
func runUpgrade(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("vitamin upgrade", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, upgradeUsage); fl.PrintDefaults() }
	dryRun := fl.Bool("dry-run", false, "show what would change, change nothing")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 1 {
		fl.Usage()
		return 2
	}
	dir := "."
	if fl.NArg() == 1 {
		dir = fl.Arg(0)
	}
	u, err := (&template.Template{}).Upgrade(dir, *dryRun)
	if err != nil {
		fmt.Fprintln(stderr, "vitamin upgrade:", err)
		if errors.Is(err, template.ErrInvalid) {
			return 2
		}
		return 1
	}
	would := ""
	if *dryRun {
		would = " (dry run: nothing written)"
	}
	fmt.Fprintf(stdout, "template %s → %s%s\n", u.From, u.To, would)
	for _, l := range []struct {
		what  string
		files []string
		note  string
	}{
		{"replaced", u.Replaced, ""},
		{"added", u.Added, ""},
		{"changed by you, new version beside", u.Beside, template.BesideSuffix},
		{"deleted by you, left deleted", u.Deleted, ""},
		{"no longer in the template, left as they are", u.Dropped, ""},
	} {
		if len(l.files) == 0 {
			continue
		}
		fmt.Fprintf(stdout, "%s:\n", l.what)
		for _, f := range l.files {
			if l.note != "" {
				fmt.Fprintf(stdout, "  %s  (see %s%s)\n", f, f, l.note)
			} else {
				fmt.Fprintf(stdout, "  %s\n", f)
			}
		}
	}
	fmt.Fprintf(stdout, "unchanged: %d files; changed by you with no new version: %d\n", len(u.Unchanged), len(u.Kept))
	return 0
}

func indent(b []byte) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}
