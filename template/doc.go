// Package template holds the skeleton of a Vitamin service and the code
// that turns it into a new project under a given module path.
//
// The skeleton is a real, compiling module that is built and tested with
// the rest of the repository, so the projects it generates do not rot. The
// vitamin command (cmd/vitamin) is its user interface.
package template
