package admin

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"
)

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"dur": func(d time.Duration) string {
		if d == 0 {
			return "–"
		}
		if d >= time.Second {
			return d.Round(time.Second).String()
		}
		return d.Round(time.Microsecond).String()
	},
	"since": func(t, now time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String()
	},
	"until": func(t, now time.Time) string { return t.Sub(now).Round(time.Second).String() },
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.Local().Format("15:04:05")
	},
	"esc":            url.PathEscape,
	"keys":           func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) },
	"mib":            func(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) },
	"ms":             func(d time.Duration) int64 { return d.Milliseconds() },
	"breakerActions": func() []string { return []string{"open", "close", "reset"} },
}).ParseFS(pageFS, "page.html"))

// servePage serves the page, or only its state section with ?fragment=1
// (what the page's script fetches to refresh itself).
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	data := struct {
		State
		Refresh time.Duration
		Actions bool
	}{s.State(), s.cfg.Refresh, s.cfg.Token != ""}
	name := "page.html"
	if r.URL.Query().Get("fragment") == "1" {
		name = "state"
	}
	var buf bytes.Buffer
	if err := page.ExecuteTemplate(&buf, name, data); err != nil {
		text(w, http.StatusInternalServerError, "admin: page: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}
