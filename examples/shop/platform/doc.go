// Package platform is what the shop's services share beyond what package
// service does for every Vitamin service: their settings on this machine
// (loopback ports, Consul from CONSUL_HTTP_ADDR) and the connection to the
// shop's JetStream broker.
package platform
