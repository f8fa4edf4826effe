// Command vitamin is Vitamin's command-line tool.
//
// Usage:
//
//	vitamin new <module-path> [dir]    generate a service from the template
//	vitamin upgrade [-dry-run] [dir]   upgrade a generated service to this template
//	vitamin status [-json] ADDR        show a running service's state from its admin listener
//	vitamin version                    print the version of Vitamin the tool was built from
//	vitamin help                       print this help
//
// The project generator (vitamin new <module-path>) is built on package
// github.com/vitamin-go/vitamin/template.
package main
