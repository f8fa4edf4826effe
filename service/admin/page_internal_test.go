package admin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
)

// TestPageShowsAPulledCanary: the page's row for a service whose canary
// the confidence guard pulled shows why, with both subsets' figures.
func TestPageShowsAPulledCanary(t *testing.T) {
	ev := &client.GuardEvent{Service: "orders", Canary: "version=canary", Reason: "errors",
		Detail: "20.0% of 100 canary calls failed against 0.0% of 947 baseline calls (margin 5.0%)",
		P:      1.2e-5, At: time.Now(),
		CanaryStats: client.SubsetStats{Calls: 100, Errors: 20, Quantile: 12 * time.Millisecond},
		Baseline:    client.SubsetStats{Calls: 947, Quantile: 9 * time.Millisecond}}
	st := State{Time: time.Now(), Services: []client.ServiceState{{Service: "orders", Kind: "http", Algorithm: "p2c",
		Discovery: client.WatchState{Seen: true}, Stage: "version=stage",
		Canary: &client.CanaryState{Key: "version", Value: "canary", Weight: 0.1, Instances: 1,
			Guard: &client.GuardState{Window: 1, Pulled: ev}}}}}
	data := struct {
		State
		Refresh time.Duration
		Actions bool
	}{st, time.Second, false}
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, "page.html", data); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"canary pulled", "for its errors", ev.Detail, "<td>canary</td><td>100</td><td>20</td>", "<td>baseline</td><td>947</td>", "stage version=stage: pinned calls only"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
