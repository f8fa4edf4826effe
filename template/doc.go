// Package template holds the skeleton of a Vitamin service and the code
// that turns it into a new project under a given module path, and later
// upgrades that project to a newer skeleton.
//
// # The skeleton
//
// The skeleton, under template/skeleton, is a real service in the Vitamin
// module (github.com/vitamin-go/vitamin/template/skeleton/...): it is
// compiled, vetted and tested with the rest of the repository, so the
// projects it generates do not rot (the idea of gonew). It is embedded in
// the package (Skeleton), so that the vitamin command needs nothing but
// the module cache to generate a project.
//
// # New
//
// Template.New copies the skeleton into a directory and rewrites it for
// the new module path: the import paths, the service's name in its three
// spellings (skeleton, Skeleton, SKELETON become orders, Orders, ORDERS
// for example.com/orders), the paths (cmd/skeleton becomes cmd/orders),
// and the file descriptor embedded in the generated protobuf code, which
// is decoded, renamed and encoded again. go.mod requires the Vitamin
// version and, at the versions that Vitamin's go.mod names, the modules
// the skeleton imports and Vitamin's own requirements; go.sum starts as
// Vitamin's, so the project builds at once, offline.
//
//	files, err := (&template.Template{}).New("orders", template.Params{ModulePath: "example.com/orders"})
//
// Bad input fails with a *FieldError behind ErrInvalid, before anything is
// written: an invalid module path, a name that is not a Go identifier, a
// directory that is not empty.
//
// # Upgrade
//
// The project keeps a manifest (ManifestFile, .vitamin.json): the
// template version it was generated from and the SHA-256 of each file as
// generated. Template.Upgrade renders the current template for the same
// module path, replaces each file the team has not changed, writes the new
// version beside each file the team changed (main.go.new, never over
// main.go), adds the files new in the template, and lists each case.
//
// The vitamin command (cmd/vitamin) is the user interface of both.
package template
