// Package events holds the messages the shop's services exchange.
package events
