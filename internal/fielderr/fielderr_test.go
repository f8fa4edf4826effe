package fielderr_test

import (
	"errors"
	"strconv"
	"testing"

	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/internal/fielderr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestErrorNamesTheFieldAndMatchesItsSentinel(t *testing.T) {
	errInvalid := errors.New("pkg: invalid configuration")
	other := errors.New("other: invalid configuration")
	_, cause := strconv.Atoi("x")

	for _, tc := range []struct {
		err  error
		want string
	}{
		{fielderr.Errorf(errInvalid, "Config.WaitTime", "%v is not in (0, 10m]", "11m"), "pkg: invalid configuration: Config.WaitTime: 11m is not in (0, 10m]"},
		{fielderr.New(errInvalid, "orders.retry.max_attempts", 0, "must be at least 1", nil), "pkg: invalid configuration: orders.retry.max_attempts = 0: must be at least 1"},
		{fielderr.New(errInvalid, "Check.HTTP", nil, "not a URL", cause), `pkg: invalid configuration: Check.HTTP: not a URL: strconv.Atoi: parsing "x": invalid syntax`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, errInvalid) || errors.Is(tc.err, other) {
			t.Errorf("%v: errors.Is matches the wrong sentinel", tc.err)
		}
		var fe *fielderr.Error
		if !errors.As(tc.err, &fe) || fe.Field == "" {
			t.Errorf("%v: errors.As found no field", tc.err)
		}
	}
	if err := fielderr.New(errInvalid, "Check.HTTP", nil, "not a URL", cause); !errors.Is(err, cause) {
		t.Error("the cause is not in the chain")
	}
}
