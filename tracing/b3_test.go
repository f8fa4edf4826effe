package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/vitamin-go/vitamin/tracing"
	"github.com/vitamin-go/vitamin/tracing/tracinghttp"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// The IDs of the openzipkin b3-propagation README's examples.
const (
	zTrace128 = "80f198ee56343ba864fe8b2a57d3eff7"
	zTrace64  = "64fe8b2a57d3eff7"
	zSpan     = "e457b5a2e4d86bd1"
	zParent   = "05e3ac9a4f6e3b90"
)

// handlerSpan is the span a handler ran in, as the handler saw it.
type handlerSpan struct {
	sc        trace.SpanContext
	recording bool
}

// b3Service is one traced HTTP service on loopback: its handler notes the
// span it runs in and calls a plain downstream server, which notes the
// headers it received. Spans go to an in-memory exporter through a
// simple (synchronous) processor, so what is exported is what is sampled.
type b3Service struct {
	url        string
	exp        *tracetest.InMemoryExporter
	seen       chan handlerSpan
	downstream chan http.Header
}

// startB3Service starts the service with cfg; the caller clears the
// OTEL_* environment (clearOTelEnv) first.
func startB3Service(t *testing.T, cfg tracing.Config) *b3Service {
	t.Helper()
	s := &b3Service{exp: tracetest.NewInMemoryExporter(), seen: make(chan handlerSpan, 1), downstream: make(chan http.Header, 1)}
	cfg.ServiceName = "svc"
	tel, err := tracing.New(t.Context(), cfg, tracing.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(s.exp)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.downstream <- r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(down.Close)
	client := &http.Client{Transport: tracinghttp.Transport(nil, tracinghttp.WithTelemetry(tel))}
	t.Cleanup(client.CloseIdleConnections)

	svc := httptest.NewServer(tracinghttp.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		s.seen <- handlerSpan{span.SpanContext(), span.IsRecording()}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, down.URL+"/next", nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_ = resp.Body.Close()
		w.WriteHeader(http.StatusNoContent)
	}), "svc", tracinghttp.WithTelemetry(tel)))
	t.Cleanup(svc.Close)
	s.url = svc.URL + "/work"
	return s
}

// call sends one request with the given headers and returns the span the
// handler ran in and the headers the downstream server received.
func (s *b3Service) call(t *testing.T, header http.Header) (handlerSpan, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("GET /work: %s", resp.Status)
	}
	var span handlerSpan
	select {
	case span = <-s.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run")
	}
	select {
	case h := <-s.downstream:
		return span, h
	case <-time.After(10 * time.Second):
		t.Fatal("the downstream server got no request")
		return span, nil
	}
}

// exported waits until the server and client spans are exported.
func (s *b3Service) exported(t *testing.T) (server, client tracetest.SpanStub) {
	t.Helper()
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if n := len(s.exp.GetSpans()); n < 2 {
			return fmt.Errorf("%d of 2 spans exported", n)
		}
		return nil
	})
	for _, sp := range s.exp.GetSpans() {
		switch sp.SpanKind {
		case trace.SpanKindServer:
			server = sp
		case trace.SpanKindClient:
			client = sp
		}
	}
	return server, client
}

// b3Headers keeps the trace headers of h.
func b3Headers(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if lk := strings.ToLower(k); lk == "b3" || strings.HasPrefix(lk, "x-b3-") || lk == "traceparent" {
			out[http.CanonicalHeaderKey(k)] = strings.Join(v, ",")
		}
	}
	return out
}

// b3TraceOut is how a trace ID goes out in B3: a 64-bit one in 16
// characters.
func b3TraceOut(id trace.TraceID) string {
	return strings.TrimPrefix(id.String(), "0000000000000000")
}

func TestB3SamplingStatesInAndOut(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	type want struct {
		sampled bool
		trace   string // the caller's trace the service joins; "" for a new trace
		parent  string // the server span's parent; "" for a root span
		out     string // the sampling state sent on: "1", "0" or "d"
	}
	tests := []struct {
		name  string
		in    http.Header
		ratio float64
		want  want
	}{
		// Single header, the forms of the README.
		{"b3 ids-accept-parent", h("b3", zTrace128+"-"+zSpan+"-1-"+zParent), 0, want{true, zTrace128, zSpan, "1"}},
		{"b3 ids-accept", h("b3", zTrace128+"-"+zSpan+"-1"), 0, want{true, zTrace128, zSpan, "1"}},
		{"b3 ids-deny", h("b3", zTrace128+"-"+zSpan+"-0"), 1, want{false, zTrace128, zSpan, "0"}},
		{"b3 ids-deny-parent", h("b3", zTrace128+"-"+zSpan+"-0-"+zParent), 1, want{false, zTrace128, zSpan, "0"}},
		{"b3 ids-debug", h("b3", zTrace128+"-"+zSpan+"-d"), 0, want{true, zTrace128, zSpan, "d"}},
		{"b3 ids-debug-parent", h("b3", zTrace128+"-"+zSpan+"-d-"+zParent), 0, want{true, zTrace128, zSpan, "d"}},
		{"b3 ids deferred, ratio 1", h("b3", zTrace128+"-"+zSpan), 1, want{true, zTrace128, zSpan, "1"}},
		{"b3 ids deferred, ratio 0", h("b3", zTrace128+"-"+zSpan), 0, want{false, zTrace128, zSpan, "0"}},
		{"b3 64-bit trace ID", h("b3", zTrace64+"-"+zSpan+"-1"), 0, want{true, "0000000000000000" + zTrace64, zSpan, "1"}},
		{"b3: 0", h("b3", "0"), 1, want{false, "", "", "0"}},
		{"b3: 1", h("b3", "1"), 0, want{true, "", "", "1"}},
		{"b3: d", h("b3", "d"), 0, want{true, "", "", "d"}},
		{"b3 upper-case hex", h("b3", strings.ToUpper(zTrace128+"-"+zSpan)+"-1"), 0, want{true, zTrace128, zSpan, "1"}},
		// Multiple headers.
		{"multi accept with parent", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-ParentSpanId", zParent, "X-B3-Sampled", "1"), 0,
			want{true, zTrace128, zSpan, "1"}},
		{"multi deny", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-Sampled", "0"), 1, want{false, zTrace128, zSpan, "0"}},
		{"multi deferred, ratio 1", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan), 1, want{true, zTrace128, zSpan, "1"}},
		{"multi deferred, ratio 0", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan), 0, want{false, zTrace128, zSpan, "0"}},
		{"multi debug", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-Flags", "1"), 0, want{true, zTrace128, zSpan, "d"}},
		{"multi debug wins over sampled 0", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-Sampled", "0", "X-B3-Flags", "1"), 0,
			want{true, zTrace128, zSpan, "d"}},
		{"multi 64-bit trace ID", h("X-B3-TraceId", zTrace64, "X-B3-SpanId", zSpan, "X-B3-Sampled", "1"), 0,
			want{true, "0000000000000000" + zTrace64, zSpan, "1"}},
		{"multi sampled true (legacy)", h("X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-Sampled", "true"), 0,
			want{true, zTrace128, zSpan, "1"}},
		{"X-B3-Sampled: 0 alone", h("X-B3-Sampled", "0"), 1, want{false, "", "", "0"}},
		{"X-B3-Sampled: 1 alone", h("X-B3-Sampled", "1"), 0, want{true, "", "", "1"}},
		{"X-B3-Flags: 1 alone", h("X-B3-Flags", "1"), 0, want{true, "", "", "d"}},
		// Precedence and what is not B3.
		{"single wins over multi", h("b3", zTrace128+"-"+zSpan+"-1", "X-B3-TraceId", zTrace64, "X-B3-SpanId", zParent, "X-B3-Sampled", "0"), 0,
			want{true, zTrace128, zSpan, "1"}},
		{"invalid single falls back to multi", h("b3", "not-b3", "X-B3-TraceId", zTrace128, "X-B3-SpanId", zSpan, "X-B3-Sampled", "1"), 0,
			want{true, zTrace128, zSpan, "1"}},
		{"parent without sampling state is no b3", h("b3", zTrace128+"-"+zSpan+"-"+zParent), 1, want{true, "", "", "1"}},
		{"nothing, ratio 1", nil, 1, want{true, "", "", "1"}},
		{"nothing, ratio 0", nil, 0, want{false, "", "", "0"}},
	}
	clearOTelEnv(t)
	for _, props := range [][]string{{"b3"}, {"b3multi"}, {"tracecontext", "baggage", "b3multi"}} {
		t.Run(strings.Join(props, ","), func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s := startB3Service(t, tracing.Config{Propagators: props, SampleRatio: tracing.Ratio(tt.ratio)})
					checkB3(t, s, props, tt.in, tt.want.sampled, tt.want.trace, tt.want.parent, tt.want.out)
				})
			}
		})
	}
}

func checkB3(t *testing.T, s *b3Service, props []string, in http.Header, sampled bool, wantTrace, wantParent, out string) {
	t.Helper()
	span, got := s.call(t, in)
	sc := span.sc
	if sc.IsSampled() != sampled || span.recording != sampled {
		t.Errorf("handler span sampled=%v recording=%v, want %v", sc.IsSampled(), span.recording, sampled)
	}
	if wantTrace != "" && sc.TraceID().String() != wantTrace {
		t.Errorf("handler ran in trace %s, want the caller's %s", sc.TraceID(), wantTrace)
	}
	if wantTrace == "" && sc.TraceID().String() == zTrace128 {
		t.Errorf("handler joined trace %s, want a new one", sc.TraceID())
	}

	// The span ID sent on is the client span's; its parent, the server
	// span, is sent when the client span is recorded.
	var clientSpan, parent string
	if sampled {
		server, client := s.exported(t)
		if got := server.Parent.SpanID().String(); (wantParent == "" && server.Parent.IsValid()) || (wantParent != "" && got != wantParent) {
			t.Errorf("server span parent %s (valid %v), want %q", got, server.Parent.IsValid(), wantParent)
		}
		if server.Parent.IsValid() && !server.Parent.IsRemote() {
			t.Errorf("server span parent %s is not remote", server.Parent.SpanID())
		}
		if client.Parent.SpanID() != sc.SpanID() {
			t.Errorf("client span parent %s, want the server span %s", client.Parent.SpanID(), sc.SpanID())
		}
		clientSpan, parent = client.SpanContext.SpanID().String(), sc.SpanID().String()
	} else {
		// Nothing recorded: take the client span's ID from what was sent,
		// after checking it is a new one.
		clientSpan = got.Get("X-B3-SpanId")
		if b3 := got.Get("b3"); b3 != "" {
			if f := strings.Split(b3, "-"); len(f) > 1 {
				clientSpan = f[1]
			}
		}
		if len(clientSpan) != 16 || clientSpan == sc.SpanID().String() || clientSpan == zSpan {
			t.Errorf("span ID sent on %q, want a new client span's", clientSpan)
		}
		if n := len(s.exp.GetSpans()); n != 0 {
			t.Errorf("%d spans exported, want none", n)
		}
	}

	traceOut := b3TraceOut(sc.TraceID())
	want := map[string]string{}
	if props[0] == "b3" {
		v := traceOut + "-" + clientSpan + "-" + out
		if parent != "" {
			v += "-" + parent
		}
		want["B3"] = v
	} else {
		want["X-B3-Traceid"], want["X-B3-Spanid"] = traceOut, clientSpan
		if parent != "" {
			want["X-B3-Parentspanid"] = parent
		}
		if out == "d" {
			want["X-B3-Flags"] = "1"
		} else {
			want["X-B3-Sampled"] = out
		}
	}
	if props[0] == "tracecontext" {
		flags := "00"
		if sampled {
			flags = "01"
		}
		want["Traceparent"] = "00-" + sc.TraceID().String() + "-" + clientSpan + "-" + flags
	}
	if diff := cmp.Diff(want, b3Headers(got)); diff != "" {
		t.Errorf("headers sent downstream (-want +got):\n%s", diff)
	}
}

// TestB3PassesThroughWithTracingDisabled: a service with tracing disabled
// has no span of its own, and passes on exactly what it received:
// deferred stays deferred, a lone deny stays a lone deny, the caller's
// parent span ID and debug travel on.
func TestB3PassesThroughWithTracingDisabled(t *testing.T) {
	tests := []struct {
		name string
		prop string
		in   map[string]string
		want map[string]string
	}{
		{"single deferred", "b3", map[string]string{"B3": zTrace128 + "-" + zSpan}, map[string]string{"B3": zTrace128 + "-" + zSpan}},
		{"single with parent", "b3", map[string]string{"B3": zTrace128 + "-" + zSpan + "-1-" + zParent}, map[string]string{"B3": zTrace128 + "-" + zSpan + "-1-" + zParent}},
		{"single 64-bit debug", "b3", map[string]string{"B3": zTrace64 + "-" + zSpan + "-d"}, map[string]string{"B3": zTrace64 + "-" + zSpan + "-d"}},
		{"b3: 0", "b3", map[string]string{"B3": "0"}, map[string]string{"B3": "0"}},
		{"b3: d", "b3", map[string]string{"B3": "d"}, map[string]string{"B3": "d"}},
		{"multi deferred", "b3multi", map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan},
			map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan}},
		{"multi with parent", "b3multi", map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan, "X-B3-Parentspanid": zParent, "X-B3-Sampled": "0"},
			map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan, "X-B3-Parentspanid": zParent, "X-B3-Sampled": "0"}},
		{"multi debug", "b3multi", map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan, "X-B3-Flags": "1"},
			map[string]string{"X-B3-Traceid": zTrace128, "X-B3-Spanid": zSpan, "X-B3-Flags": "1"}},
		{"X-B3-Sampled: 0 alone", "b3multi", map[string]string{"X-B3-Sampled": "0"}, map[string]string{"X-B3-Sampled": "0"}},
		{"single in, multi out", "b3multi", map[string]string{"B3": "0"}, map[string]string{"X-B3-Sampled": "0"}},
		{"nothing in, nothing out", "b3multi", nil, map[string]string{}},
	}
	clearOTelEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startB3Service(t, tracing.Config{Propagators: []string{tt.prop}, Disabled: true})
			in := http.Header{}
			for k, v := range tt.in {
				in.Set(k, v)
			}
			_, got := s.call(t, in)
			if diff := cmp.Diff(tt.want, b3Headers(got)); diff != "" {
				t.Errorf("headers passed on (-want +got):\n%s", diff)
			}
		})
	}
}

// TestB3DenyHoldsForEverySampler: a lone deny is the parent's decision
// for the parent-based samplers OTEL_TRACES_SAMPLER names too.
func TestB3DenyHoldsForEverySampler(t *testing.T) {
	for _, sampler := range []string{"", "parentbased_always_on", "parentbased_traceidratio"} {
		t.Run("OTEL_TRACES_SAMPLER="+sampler, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_TRACES_SAMPLER", sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", "1")
			s := startB3Service(t, tracing.Config{Propagators: []string{"b3multi"}})
			span, got := s.call(t, http.Header{"X-B3-Sampled": {"0"}})
			if span.sc.IsSampled() || span.recording {
				t.Error("a request with X-B3-Sampled: 0 was sampled")
			}
			if v := got.Get("X-B3-Sampled"); v != "0" {
				t.Errorf("X-B3-Sampled sent on %q, want 0", v)
			}
		})
	}
}
