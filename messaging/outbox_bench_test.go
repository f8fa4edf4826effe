package messaging

import (
	"database/sql"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// BenchmarkOutboxCommitToPublished measures, for events committed through
// the outbox by 4 writers (one transaction each) and published by one
// relay woken by LISTEN/NOTIFY, the time from the writer's commit
// returning to the event reaching a subscriber of its subject: p50-ms and
// p99-ms (the budget is about p99), and events/s. Run it with a fixed
// count, for example -benchtime=5000x.
func BenchmarkOutboxCommitToPublished(b *testing.B) {
	srv := vitamintest.StartNATS(b)
	nc := srv.Connect(b)
	js := newJS(b, nc)
	ctx := testCtx(b)
	if _, err := EnsureStream(ctx, js, StreamConfig{Name: "events", Subjects: []string{"events.>"}}); err != nil {
		b.Fatal(err)
	}
	pg := vitamintest.StartPostgres(b)
	pg.DB.SetMaxOpenConns(16)
	ob := newOutbox(b, pg.DB, WithoutTracing())
	startRelay(b, ob, js, RelayConfig{})

	// The relay may publish an event before its writer records the
	// commit: whichever of the two times comes second completes the pair.
	var (
		mu        sync.Mutex
		committed = make(map[string]time.Time, b.N)
		received  = make(map[string]time.Time, b.N)
		delays    = make([]time.Duration, 0, b.N)
		all       = make(chan struct{})
	)
	pair := func(id string, at time.Time, mine, other map[string]time.Time, delay func(mine, other time.Time) time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		o, ok := other[id]
		if !ok {
			mine[id] = at
			return
		}
		delays = append(delays, delay(at, o))
		if len(delays) == b.N {
			close(all)
		}
	}
	sub, err := nc.Subscribe("events.>", func(m *nats.Msg) {
		pair(m.Header.Get(HeaderMsgID), time.Now(), received, committed, func(recv, commit time.Time) time.Duration { return recv.Sub(commit) })
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < b.N; i += 4 {
				id := "bench-" + strconv.Itoa(i)
				if err := inTx(ctx, pg.DB, func(tx *sql.Tx) error {
					_, err := ob.Publish(ctx, tx, "events.bench", order{ID: id}, WithMsgID(id))
					return err
				}); err != nil {
					b.Error(err)
					return
				}
				pair(id, time.Now(), committed, received, func(commit, recv time.Time) time.Duration { return max(recv.Sub(commit), 0) })
			}
		})
	}
	wg.Wait()
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
