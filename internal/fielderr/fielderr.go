package fielderr

import "fmt"

// Error names a bad field and says what is wrong with it. It matches the
// sentinel it was made with (errors.Is) and unwraps to its cause. It is
// not modified after it is returned, so it is safe for concurrent use.
type Error struct {
	// Field is the path of the field or option, such as
	// "Balancing.Outlier.MaxEjectedShare", "orders.retry.max_attempts" or
	// "WithWatcher".
	Field string
	// Value is the offending value; nil when there is none to show.
	Value any
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying cause, if any (a parse error…).
	Err error

	sentinel error
}

// New returns an *Error behind sentinel. value may be nil.
func New(sentinel error, field string, value any, reason string, cause error) *Error {
	return &Error{Field: field, Value: value, Reason: reason, Err: cause, sentinel: sentinel}
}

// Errorf is New without a value or cause, its reason formatted.
func Errorf(sentinel error, field, format string, args ...any) *Error {
	return New(sentinel, field, nil, fmt.Sprintf(format, args...), nil)
}

// Error reads "<sentinel>: <field> = <value>: <reason>: <cause>", leaving
// out the value and the cause when there are none.
func (e *Error) Error() string {
	msg := e.Field
	if e.sentinel != nil {
		msg = e.sentinel.Error() + ": " + msg
	}
	if e.Value != nil {
		msg += fmt.Sprintf(" = %v", e.Value)
	}
	msg += ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is the sentinel e was made with.
func (e *Error) Is(target error) bool { return target != nil && target == e.sentinel }

// Unwrap returns the cause, if any.
func (e *Error) Unwrap() error { return e.Err }
