// Package fielderr is the one error shape of Vitamin for invalid settings
// and input: the field, the offending value, the reason and the cause,
// behind the sentinel of the package that reports it. Each public package
// exposes it as its own FieldError (a type alias), so errors.As with any of
// them finds it, and errors.Is matches the sentinel it was made with, such
// as client.ErrInvalidConfig.
package fielderr
