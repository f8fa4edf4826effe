package admin_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
)

// The JSON API shows each breaker; forcing one open needs the credential.
func Example() {
	policies, _ := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 20, FailureRate: 0.5, OpenFor: time.Minute},
	}})
	policies.For("payments", "") // the executor of calls to payments

	srv, _ := admin.New(admin.Config{Token: "s3cret"}, admin.WithPolicies(policies))
	h := srv.Handler()

	st := srv.State() // what GET /api/v1/state answers
	fmt.Println(st.Breakers[0].Policy, st.Breakers[0].State)

	for _, auth := range []string{"", "Bearer s3cret"} {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/breakers/payments/open", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, policies.Breakers()[0].State)
	}
	// Output:
	// payments closed
	// 401 closed
	// 200 open
}
