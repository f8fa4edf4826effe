package messaging

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAckSubject(t *testing.T) {
	want := ackMetadata{stream: "events", delivered: 3, sequence: 42, timestamp: 1700000000123456789}
	for _, tc := range []struct {
		subject string
		ok      bool
	}{
		{"$JS.ACK.events.durable.3.42.40.1700000000123456789.7", true},
		{"$JS.ACK._.ACCHASH.events.durable.3.42.40.1700000000123456789.7.rnd", true},
		{"$JS.ACK.hub.ACCHASH.events.durable.3.42.40.1700000000123456789.7", true},
		{"$JS.ACK.hub.ACCHASH.events.durable.3.42.40.1700000000123456789.7.rnd.more", true},
		{"$JS.ACK.events.durable.3.42.40.1700000000123456789", false},     // 8 tokens
		{"$JS.ACK.x.events.durable.3.42.40.1700000000123456789.7", false}, // 10 tokens
		{"$JS.ACK.events.durable.three.42.40.1700000000123456789.7", false},
		{"$JS.NAK.events.durable.3.42.40.1700000000123456789.7", false},
		{"_INBOX.abc", false},
		{"", false},
	} {
		got, ok := parseAckSubject(tc.subject)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v, want %v", tc.subject, ok, tc.ok)
			continue
		}
		if ok {
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(ackMetadata{})); diff != "" {
				t.Errorf("%q (-want +got):\n%s", tc.subject, diff)
			}
		}
	}
}

func BenchmarkParseAckSubject(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		parseAckSubject("$JS.ACK._.ACCHASH.events.durable.3.42.40.1700000000123456789.7.rnd")
	}
}
