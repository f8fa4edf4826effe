package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{args: []string{"help"}, code: 0, stdout: usage},
		{args: []string{"version"}, code: 0, stdout: "vitamin " + version() + "\n"},
		{args: nil, code: 2, stderrPart: "Usage:"},
		{args: []string{"frobnicate"}, code: 2, stderrPart: `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if stdout.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.stderrPart)
			}
		})
	}
}

func Example_help() {
	run([]string{"help"}, os.Stdout, os.Stderr)
	// Output:
	// vitamin is the command-line tool of the Vitamin microservice toolkit.
	//
	// Usage:
	//
	//	vitamin new <module-path> [dir]    generate a service from the template
	//	vitamin upgrade [-dry-run] [dir]   upgrade a generated service to this template
	//	vitamin status [-json] ADDR        show a running service's state from its admin listener
	//	vitamin version                    print the version of Vitamin the tool was built from
	//	vitamin help                       print this help
}
