package messaging

import (
	"cmp"
	"fmt"
	"time"
)

// notNegative returns a *FieldError if v is below zero.
func notNegative[T int | time.Duration](field string, v T) error {
	if v < 0 {
		return invalid(field, v, "must not be negative")
	}
	return nil
}

// setBackoff checks and defaults the Backoff and MaxBackoff fields of the
// Config named typ, the same way for every Config: neither may be
// negative; an unset MaxBackoff is defMax, or Backoff if that is larger;
// a MaxBackoff set below Backoff is an error.
func setBackoff(typ string, backoff, maxBackoff *time.Duration, defBackoff, defMax time.Duration) error {
	if err := cmp.Or(notNegative(typ+".Backoff", *backoff), notNegative(typ+".MaxBackoff", *maxBackoff)); err != nil {
		return err
	}
	*backoff = cmp.Or(*backoff, defBackoff)
	*maxBackoff = cmp.Or(*maxBackoff, max(defMax, *backoff))
	if *maxBackoff < *backoff {
		return invalid(typ+".MaxBackoff", *maxBackoff, fmt.Sprintf("must not be below Backoff (%v)", *backoff))
	}
	return nil
}
