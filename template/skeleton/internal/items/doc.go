// Package items is the domain of the skeleton service: items with a
// price asked of the pricing service, served over HTTP and gRPC, and the
// events that say an item was created, published and consumed.
//
// Replace it with your own domain; the rest of the project (internal/app,
// cmd/skeleton) wires whatever this package offers into the service.
package items
