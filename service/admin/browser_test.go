package admin_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/resilience"
	"github.com/vitamin-go/vitamin/service/admin"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// The page, in a real headless Chromium, while a load generator makes a
// downstream service fail: it shows the breaker OPEN and the instance
// ejected; "close" without the credential is refused and changes nothing;
// with it, the breaker closes.
func TestPageInBrowser(t *testing.T) {
	bin := chromium(t)
	ctx := context.Background()

	reg, err := vitamintest.NewRegistry(vitamintest.RegistryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	down := startDownstream(t)
	down.fail.Store(true)
	down.register(t, reg, "downstream", "down-1")

	policies, err := resilience.NewRegistry(resilience.Config{Default: resilience.Policy{
		CircuitBreaker: &resilience.CircuitBreaker{WindowSize: 20, MinRequests: 10, FailureRate: 0.5, OpenFor: time.Hour},
	}})
	if err != nil {
		t.Fatal(err)
	}
	mon := client.NewMonitor()
	conn, err := client.NewGRPC(ctx, "downstream", client.Config{Balancing: client.Balancing{
		Outlier: client.Outlier{Consecutive: 3, BaseEjection: time.Hour, MaxEjection: time.Hour},
	}}, client.WithWatcher(reg), client.WithPolicies(policies), client.WithMonitor(mon), client.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const token = "s3cret-token"
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: token, Refresh: 200 * time.Millisecond,
		Profiling: admin.Profiling{Disabled: true}, MemoryLimit: admin.MemoryLimit{Disabled: true}},
		admin.WithPolicies(policies), admin.WithClients(mon), admin.WithBuild("orders", "orders-1", "1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(ctx)

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 1600))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()

	url := "http://" + srv.Addr() + "/"
	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#state"))); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	js := func(expr string) string {
		t.Helper()
		out, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return out
	}
	breakerState := `(document.getElementById("breaker-downstream")||{dataset:{}}).dataset.state||""`
	ejected := `(document.getElementById("instance-downstream-down-1")||{dataset:{}}).dataset.ejected||""`
	message := `document.getElementById("message").textContent`
	closeButton := chromedp.CSS(`#breaker-downstream form.act-close button`)

	stop := load(conn)
	// The page refreshes itself: no reload from the test.
	eventually(t, 30*time.Second, "the page shows the breaker open", func() bool { return js(breakerState) == "open" })
	eventually(t, 30*time.Second, "the page shows the instance ejected", func() bool { return js(ejected) == "true" })
	stop()
	screenshot(t, bctx, "admin-page-open.png")
	if txt := js(`document.getElementById("instance-downstream-down-1").textContent`); !strings.Contains(txt, "consecutive failures") {
		t.Errorf("the ejected instance's row does not say why: %q", txt)
	}

	// No credential: refused, nothing changes.
	click(t, bctx, closeButton)
	eventually(t, 10*time.Second, "the page says the action was refused", func() bool { return strings.Contains(js(message), "refused (401)") },
		func() string { return "message: " + js(message) })
	if s := policies.Breakers()[0].State; s != "open" {
		t.Fatalf("breaker %s after a refused close, want open", s)
	}
	eventually(t, 10*time.Second, "the page still shows it open after a refresh", func() bool {
		return js(breakerState) == "open" && strings.Contains(js(`document.getElementById("updated").textContent`), "updated")
	})

	// A wrong credential: refused too.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("credential"), "wrong")); err != nil {
		t.Fatal(err)
	}
	click(t, bctx, closeButton)
	eventually(t, 10*time.Second, "the page says the action was refused", func() bool { return strings.Contains(js(message), "refused (403)") })
	if s := policies.Breakers()[0].State; s != "open" {
		t.Fatalf("breaker %s after a close with a wrong credential, want open", s)
	}

	// The credential: closed.
	js(`document.getElementById("credential").value = ""`)
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("credential"), token)); err != nil {
		t.Fatal(err)
	}
	click(t, bctx, closeButton)
	eventually(t, 10*time.Second, "the page shows the breaker closed", func() bool { return js(breakerState) == "closed" },
		func() string {
			return "message: " + js(message) + "; credential: " + js(`document.getElementById("credential").value`)
		})
	if !strings.HasPrefix(js(message), "done") {
		t.Errorf("message %q, want done", js(message))
	}
	if s := policies.Breakers()[0].State; s != "closed" {
		t.Fatalf("breaker %s after a close with the credential, want closed", s)
	}

	// And the ejection is cleared the same way.
	click(t, bctx, chromedp.CSS(`[id="instance-downstream-down-1"] form.act-clear button`))
	eventually(t, 10*time.Second, "the page shows the instance back", func() bool { return js(ejected) == "false" })
	screenshot(t, bctx, "admin-page-closed.png")
}

// click clicks the element sel, again if the page's refresh replaced it
// between finding it and clicking it.
func click(t *testing.T, ctx context.Context, sel chromedp.CSS) {
	t.Helper()
	var err error
	eventually(t, 10*time.Second, "click "+string(sel), func() bool {
		err = chromedp.Do(ctx, chromedp.Click(sel))
		return err == nil
	}, func() string { return fmt.Sprint(err) })
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), t.Name()+"-"+name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
