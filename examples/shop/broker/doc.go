// Command broker runs the shop's message broker: a NATS server with
// JetStream, embedded from github.com/nats-io/nats-server/v2, keeping its
// streams in a directory so that a restart loses nothing.
package main
