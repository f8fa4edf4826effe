package messaging

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vitamin-go/vitamin/resilience"
)

func TestDefaultCodecReadsContentTypesAsMediaTypes(t *testing.T) {
	pb, _, err := DefaultCodec{}.Marshal(wrapperspb.String("hi"))
	if err != nil {
		t.Fatal(err)
	}
	const js = `{"id":"o-1","total":3}`
	tests := []struct {
		contentType string
		data        []byte
		into        func() any
		ok          bool
	}{
		{"", []byte(js), func() any { return new(order) }, true},
		{"application/json", []byte(js), func() any { return new(order) }, true},
		{"application/json; charset=utf-8", []byte(js), func() any { return new(order) }, true},
		{"application/json;charset=UTF-8", []byte(js), func() any { return new(order) }, true},
		{"APPLICATION/JSON", []byte(js), func() any { return new(order) }, true},
		{"Application/Json ; Charset=\"utf-8\"", []byte(js), func() any { return new(order) }, true},
		{"application/vnd.acme.order+json", []byte(js), func() any { return new(order) }, true},
		{"application/problem+json; charset=utf-8", []byte(js), func() any { return new(order) }, true},
		{"text/json", []byte(js), func() any { return new(order) }, true},
		{"application/json; charset=utf-16", []byte(js), func() any { return new(order) }, false},
		{"application/json", []byte("{not json"), func() any { return new(order) }, false},
		{"text/plain", []byte(js), func() any { return new(order) }, false},
		{"+json", []byte(js), func() any { return new(order) }, false},
		{"application/protobuf", pb, func() any { return new(wrapperspb.StringValue) }, true},
		{"Application/X-Protobuf", pb, func() any { return new(wrapperspb.StringValue) }, true},
		{"application/octet-stream; name=x", []byte("raw"), func() any { return new([]byte) }, true},
		{"application/protobuf", pb, func() any { return new(order) }, false},
		{"/", []byte(js), func() any { return new(order) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.contentType, func(t *testing.T) {
			err := DefaultCodec{}.Unmarshal(tt.data, tt.contentType, tt.into())
			if (err == nil) != tt.ok {
				t.Errorf("Unmarshal(%q) = %v, want ok=%v", tt.contentType, err, tt.ok)
			}
		})
	}
}

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"application/json":                "application/json",
		"Application/JSON; charset=utf-8": "application/json",
		"application/vnd.acme+json;v=2":   "application/vnd.acme+json",
	} {
		if got, err := MediaType(in); err != nil || got != want {
			t.Errorf("MediaType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := MediaType("not a type"); err == nil {
		t.Error("MediaType(\"not a type\") = nil error")
	}
}

// TestMessagesFromOtherLanguagesAreDecoded: a publisher in another
// language writes the content type with parameters or in another case,
// and header names in lower case. Through a real NATS server and a
// Consumer, every such JSON message is handled once (not dead-lettered),
// its ID and caller are read whatever their case, and a second copy with
// the same lower-case message ID is recognised as a duplicate. A payload
// that really does not decode still dead-letters, and the dead letter
// carries one Nats-Msg-Id, not one per letter case.
func TestMessagesFromOtherLanguagesAreDecoded(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	type got struct {
		order       order
		id, caller  string
		contentType string
	}
	var (
		mu      sync.Mutex
		handled = map[string][]got{}
	)
	h := Typed(func(ctx context.Context, m *Message, o order) error {
		mu.Lock()
		defer mu.Unlock()
		handled[m.ID] = append(handled[m.ID], got{order: o, id: m.ID, caller: m.Caller, contentType: m.HeaderValue("CONTENT-TYPE")})
		return nil
	})
	c, err := NewConsumer(ctx, e.js, fastConfig("polyglot"), h)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)

	publish := func(data string, header nats.Header) {
		t.Helper()
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: "events.orders", Data: []byte(data), Header: header}); err != nil {
			t.Fatal(err)
		}
	}
	good := []struct {
		id     string
		header nats.Header
	}{
		{"node-1", nats.Header{"content-type": {"application/json; charset=utf-8"}, "nats-msg-id": {"node-1"}, "vitamin-caller": {"cart-js"}}},
		{"py-2", nats.Header{"Content-Type": {"APPLICATION/JSON"}, "Nats-Msg-Id": {"py-2"}, "VITAMIN-CALLER": {"cart-js"}}},
		{"java-3", nats.Header{"CONTENT-TYPE": {"application/json;charset=UTF-8"}, "NATS-MSG-ID": {"java-3"}, "Vitamin-Caller": {"cart-js"}}},
		{"vnd-4", nats.Header{"content-type": {"application/vnd.acme.order+json"}, "nats-msg-id": {"vnd-4"}, "vitamin-caller": {"cart-js"}}},
	}
	for _, g := range good {
		publish(`{"id":"`+g.id+`","total":7}`, g.header)
	}
	// The broker deduplicates only on "Nats-Msg-Id" spelled exactly: this
	// second copy (its ID in yet another case) is stored, and the
	// consumer's idempotency recognises it. Workers run in parallel, so
	// either copy may be the one handled: they differ only in case.
	publish(`{"id":"node-1","total":7}`, nats.Header{"content-type": {"application/json; charset=utf-8"}, "NATS-MSG-ID": {"node-1"}, "Vitamin-Caller": {"cart-js"}})
	// Really undecodable, in lower case too.
	publish(`{"id":`, nats.Header{"content-type": {"application/json; charset=utf-8"}, "nats-msg-id": {"broken-5"}})

	dls := deadLetters(t, e.js, 1)
	settled(t, e.js, "events", "polyglot", 10*time.Second)

	mu.Lock()
	defer mu.Unlock()
	for _, g := range good {
		want := []got{{order: order{ID: g.id, Total: 7}, id: g.id, caller: "cart-js", contentType: headerGet(g.header, "Content-Type")}}
		if diff := cmp.Diff(want, handled[g.id], cmp.AllowUnexported(got{})); diff != "" {
			t.Errorf("message %s handled (-want +got):\n%s", g.id, diff)
		}
	}
	if len(handled) != len(good) {
		t.Errorf("handled %d message IDs, want %d: %v", len(handled), len(good), handled)
	}
	if n := streamMsgs(t, e.js, "deadletters"); n != 1 {
		t.Fatalf("%d dead letters, want 1 (the undecodable one)", n)
	}
	dl := dls[0].Headers()
	if got := dl.Get(HeaderDeadLetterReason); got != ReasonUndecodable {
		t.Errorf("dead letter reason %q, want %q", got, ReasonUndecodable)
	}
	if got := dl.Get(HeaderOriginMsgID); got != "broken-5" {
		t.Errorf("dead letter %s = %q, want broken-5", HeaderOriginMsgID, got)
	}
	var ids []string
	for k, v := range dl {
		if k == HeaderMsgID || k == "nats-msg-id" {
			ids = append(ids, k+"="+v[0])
		}
	}
	if len(ids) != 1 || dl.Get(HeaderMsgID) == "" {
		t.Errorf("dead letter message IDs %v, want one %s", ids, HeaderMsgID)
	}
	if got := dl.Get("content-type"); got != "application/json; charset=utf-8" {
		t.Errorf("dead letter content-type %q, want the original's", got)
	}
}

func TestUndecodableErrorsStillDeadLetter(t *testing.T) {
	m := &Message{Header: nats.Header{"content-type": {"text/csv"}}, Data: []byte("a,b"), codec: DefaultCodec{}}
	err := m.Decode(new(order))
	var de *DecodeError
	if !errors.As(err, &de) || de.ContentType != "text/csv" || !errors.Is(err, ErrUndecodable) || !resilience.IsPermanent(err) {
		t.Errorf("Decode of text/csv = %v, want a *DecodeError naming text/csv, undecodable and permanent", err)
	}
}

func TestPublisherWritesOneMsgIDWhateverTheOptionsCase(t *testing.T) {
	e := newEnv(t)
	p := publisher(t, e)
	msg, err := p.message("events.x", order{ID: "o"}, []PublishOption{WithHeader("nats-msg-id", "lower-1"), WithHeader("content-type", "application/json; charset=utf-8")})
	if err != nil {
		t.Fatal(err)
	}
	want := nats.Header{HeaderMsgID: {"lower-1"}, "content-type": {"application/json; charset=utf-8"}}
	if diff := cmp.Diff(want, msg.Header); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}
