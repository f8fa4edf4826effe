// Package examples holds runnable systems of several services, built only
// from Vitamin's public API, that show how the packages fit together.
// Each subdirectory is one system with its own README.
package examples
