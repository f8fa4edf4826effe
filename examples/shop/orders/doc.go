// Command orders takes orders: POST /v1/orders {"sku":"tea","quantity":2}
// checks the stock with the inventory service, found in Consul and called
// through Vitamin's HTTP client (load balancing, retries on another
// instance, a circuit breaker), then publishes orders.created for billing.
// The largest quantity one order may ask for is a dynamic property, read
// from Consul KV at config/orders/max_quantity and changed at run time.
package main
