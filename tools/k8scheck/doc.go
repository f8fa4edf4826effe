// Package k8scheck checks the Kubernetes manifests of Vitamin's service
// template (template/skeleton/deploy/k8s) against the Kubernetes API
// types: each document is decoded strictly (an unknown or misspelt field
// fails), and the probes, ports and grace period are checked against the
// service's configuration (template/skeleton/config.yaml).
//
// It is a module of its own so that the Kubernetes API types never enter
// the dependency graph of Vitamin's users. Run its test from the
// repository's root:
//
//	(cd tools/k8scheck && go test ./...)
package k8scheck
