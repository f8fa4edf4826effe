package messaging

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, in the child processes
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// childEnv, set in the environment of this test binary, makes it run as an
// outbox relay ("relay"), a relay that kills itself after publishing its
// first events and before marking them ("crashing-relay") or an order
// consumer ("consumer") instead of running tests; childNATS and childDSN say where the broker and the
// database are.
const (
	childEnv  = "VITAMIN_MESSAGING_CHILD"
	childNATS = "VITAMIN_MESSAGING_CHILD_NATS"
	childDSN  = "VITAMIN_MESSAGING_CHILD_DSN"
)

// childConsumerConfig is the consumer of the end-to-end test: AckWait is
// short so that a killed instance's messages come back soon.
func childConsumerConfig() ConsumerConfig {
	return ConsumerConfig{Stream: "events", Durable: "orders", Workers: 8, AckWait: 2 * time.Second,
		Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxDeliver: 100}
}

// orderEffect is the consumer's business change: one row per order it
// handled, in the message's transaction.
func orderEffect(ctx context.Context, m *Message, o order) error {
	_, err := m.Tx().ExecContext(ctx, "INSERT INTO order_effects (order_id, msg_key) VALUES ($1, $2)", o.ID, m.Key)
	return err
}

// startProc starts a relay or a consumer of kind in its own OS process
// (see vitamintest.Process) and waits until it runs.
func startProc(t testing.TB, kind, name, natsURL, dsn string) *vitamintest.Process {
	t.Helper()
	p := vitamintest.StartProcess(t, name, childEnv+"="+kind, childNATS+"="+natsURL, childDSN+"="+dsn)
	p.Await(t, "READY", 30*time.Second)
	return p
}

// runChild is the child process: a relay or a consumer over the broker
// and database its environment names. It prints READY once running and
// exits on SIGTERM or when its parent is gone.
func runChild(kind string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s process: %v\n", kind, err)
		return 1
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	nc, err := nats.Connect(os.Getenv(childNATS), nats.MaxReconnects(-1))
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	db, err := sql.Open("pgx", os.Getenv(childDSN))
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	var r interface{ Run(context.Context) error }
	switch kind {
	case "relay", "crashing-relay":
		ob, err := NewOutbox(ctx, db, OutboxConfig{SkipCreateTable: true})
		if err != nil {
			return fail(err)
		}
		relay, err := NewRelay(ob, js, RelayConfig{BatchSize: 100})
		if err != nil {
			return fail(err)
		}
		if kind == "crashing-relay" {
			// Dies as a crash would, between publishing and marking.
			relay.afterPublish = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
		}
		r = relay
	case "consumer":
		store, err := NewSQLStore(ctx, db, SQLStoreConfig{SkipCreateTable: true})
		if err != nil {
			return fail(err)
		}
		if r, err = NewConsumer(ctx, js, childConsumerConfig(), Typed(orderEffect), WithStore(store)); err != nil {
			return fail(err)
		}
	default:
		return fail(fmt.Errorf("unknown kind %q", kind))
	}
	go func() { // the parent's end of stdout closes when it dies
		for {
			if _, err := fmt.Println("ALIVE"); err != nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	fmt.Println("READY")
	if err := r.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// childSchema creates what the children use, before any of them starts.
func childSchema(ctx context.Context, db *sql.DB) error {
	if _, err := NewOutbox(ctx, db, OutboxConfig{}); err != nil {
		return err
	}
	if _, err := NewSQLStore(ctx, db, SQLStoreConfig{}); err != nil {
		return err
	}
	for _, stmt := range []string{
		"CREATE TABLE orders (id TEXT PRIMARY KEY, total INT NOT NULL)",
		// No unique constraint: a repeated effect shows as a second row.
		"CREATE TABLE order_effects (order_id TEXT NOT NULL, msg_key TEXT NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(stmt)[2], err)
		}
	}
	return nil
}
