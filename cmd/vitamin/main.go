package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `vitamin is the command-line tool of the Vitamin microservice toolkit.

Usage:

	vitamin new <module-path> [dir]    generate a service from the template
	vitamin upgrade [-dry-run] [dir]   upgrade a generated service to this template
	vitamin status [-json] ADDR        show a running service's state from its admin listener
	vitamin version                    print the version of Vitamin the tool was built from
	vitamin help                       print this help
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run carries out one command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		fmt.Fprintln(stdout, "vitamin", version())
		return 0
	case "new":
		return runNew(args[1:], stdout, stderr)
	case "upgrade":
		return runUpgrade(args[1:], stdout, stderr)
	case "status":
		return runStatus(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "vitamin: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// version is the module version the binary was built from: a release tag
// when installed with go install …@vX.Y.Z, "(devel)" in a checkout.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
