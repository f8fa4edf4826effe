package vitamintest_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// processChild, set in the environment, makes this test binary the child
// of TestProcessSignalsAndKill instead of running the tests.
const processChild = "VITAMIN_VITAMINTEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(processChild) != "" {
		// Print a line, then exit with status 3 on SIGTERM.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Println("HELLO", os.Getenv(processChild))
		<-sig
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}

// TestProcessSignalsAndKill: a child process's lines are read as it prints
// them, it sees the signals it is sent, and Kill ends it for real.
func TestProcessSignalsAndKill(t *testing.T) {
	p := vitamintest.StartProcess(t, "child", processChild+"=world")
	if got := p.Await(t, "HELLO", 30*time.Second); got != "world" {
		t.Errorf("Await(HELLO) = %q, want world", got)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 3 {
		t.Errorf("exit code %d after SIGTERM, want 3", code)
	}

	p = vitamintest.StartProcess(t, "frozen", processChild+"=frozen")
	p.Await(t, "HELLO", 30*time.Second)
	p.Freeze()
	p.Kill()
	if ws, ok := p.State().Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("a frozen process ended with %v after Kill, want SIGKILL", p.State())
	}
}

func TestConsulRegistersAndSurvivesRestart(t *testing.T) {
	c := vitamintest.StartConsul(t)

	reg := &api.AgentServiceRegistration{ID: "orders-1", Name: "orders", Address: "127.0.0.1", Port: 8080}
	if err := c.Client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	ordersInCatalog := func(want int) func() error {
		return func() error {
			got, _, err := c.Client.Catalog().Service("orders", "", nil)
			if err != nil {
				return err
			}
			if len(got) != want {
				return fmt.Errorf("catalog has %d instances of orders, want %d", len(got), want)
			}
			return nil
		}
	}
	vitamintest.Eventually(t, 10*time.Second, ordersInCatalog(1))

	addr := c.Addr
	c.Restart(t)
	if c.Addr != addr {
		t.Fatalf("address changed across restart: %s, then %s", addr, c.Addr)
	}
	// A dev agent keeps nothing across a restart: the service is gone, and
	// the agent answers again on the same address.
	vitamintest.Eventually(t, 10*time.Second, ordersInCatalog(0))
	if err := c.Client.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register after restart: %v", err)
	}
	vitamintest.Eventually(t, 10*time.Second, ordersInCatalog(1))

	c.Stop()
	if _, err := c.Client.Status().Leader(); err == nil {
		t.Fatal("a stopped agent still answers")
	}
}

func TestConsulGRPCAndDNSOffUnlessAsked(t *testing.T) {
	c := vitamintest.StartConsul(t)
	if c.GRPCAddr != "" || c.DNSAddr != "" {
		t.Fatalf("gRPC %q and DNS %q should be off by default", c.GRPCAddr, c.DNSAddr)
	}
	self, err := c.Client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	ports := self["DebugConfig"]["GRPCPort"]
	if ports != float64(-1) {
		t.Fatalf("agent's gRPC port is %v, want -1 (off)", ports)
	}
}

func TestNATSKeepsMessagesAcrossRestart(t *testing.T) {
	n := vitamintest.StartNATS(t)
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "orders.created", []byte("order 42")); err != nil {
		t.Fatalf("publish: %v", err)
	}

	url := n.URL
	n.Restart(t)
	if n.URL != url {
		t.Fatalf("URL changed across restart: %s, then %s", url, n.URL)
	}

	var msg *jetstream.RawStreamMsg
	vitamintest.Eventually(t, 20*time.Second, func() error {
		// A request sent while the client reconnects may be lost: bound
		// each attempt.
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "ORDERS")
		if err != nil {
			return err
		}
		msg, err = s.GetMsg(ctx, 1)
		return err
	})
	if string(msg.Data) != "order 42" || msg.Subject != "orders.created" {
		t.Fatalf("after restart got %q on %q, want %q on orders.created", msg.Data, msg.Subject, "order 42")
	}
}

func TestNATSStoppedRefusesConnections(t *testing.T) {
	n := vitamintest.StartNATS(t)
	n.Stop()
	if nc, err := nats.Connect(n.URL); err == nil {
		nc.Close()
		t.Fatal("a stopped server accepted a connection")
	}
	n.Restart(t)
	n.Connect(t)
}

func TestPostgresSchemaIsCreatedAndDropped(t *testing.T) {
	var schema string
	t.Run("test", func(t *testing.T) {
		pg := vitamintest.StartPostgres(t)
		schema = pg.Schema
		ctx := context.Background()
		if _, err := pg.DB.ExecContext(ctx, "CREATE TABLE processed (key text PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		var where string
		if err := pg.DB.QueryRowContext(ctx,
			"SELECT table_schema FROM information_schema.tables WHERE table_name = 'processed' AND table_schema = current_schema()").Scan(&where); err != nil {
			t.Fatal(err)
		}
		if where != pg.Schema {
			t.Fatalf("unqualified table landed in schema %q, want %q", where, pg.Schema)
		}
	})
	pg := vitamintest.StartPostgres(t)
	var n int
	if err := pg.DB.QueryRow("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s still exists after its test ended", schema)
	}
}
