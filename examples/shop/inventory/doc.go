// Command inventory is the shop's stock service: GET /v1/stock/{sku}
// answers how many units are available and which instance answered. Run
// several instances; each registers itself in Consul.
package main
