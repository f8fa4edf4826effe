package vitamintest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS is a NATS server with JetStream embedded in the test process,
// keeping its store in a temporary directory. It is safe for concurrent
// use.
type NATS struct {
	// URL is the client URL, nats://127.0.0.1:PORT; it stays the same
	// across restarts.
	URL string
	// StoreDir is the JetStream store; it survives Stop and Restart.
	StoreDir string

	opts server.Options
	log  *Buffer

	mu  sync.Mutex
	srv *server.Server
}

// StartNATS starts an embedded NATS server with JetStream on a free
// loopback port. It is shut down when the test ends, and its log is
// attached to the test output if the test failed.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{StoreDir: t.TempDir(), log: &Buffer{}}
	n.opts = server.Options{
		ServerName: "vitamin-test",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   n.StoreDir,
		NoSigs:     true,
	}
	attachOnFailure(t, "nats server", n.log)
	t.Cleanup(n.Stop)
	if err := n.start(); err != nil {
		t.Fatalf("vitamintest: start nats: %v", err)
	}
	// Keep the port the server chose, so that a restart comes back on it.
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	n.URL = fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port)
	return n
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return fmt.Errorf("nats server already running")
	}
	opts := n.opts // the server keeps a pointer; give each run its own copy
	srv, err := server.NewServer(&opts)
	if err != nil {
		return err
	}
	srv.SetLoggerV2(natsLogger{n.log}, true, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("nats server not ready for connections")
	}
	n.srv = srv
	return nil
}

// Stop shuts the server down and waits until it has stopped. Stored
// streams and messages stay in StoreDir. Stopping a stopped server does
// nothing.
func (n *NATS) Stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart stops the server if it runs and starts it again with the same
// store and port.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	fmt.Fprintf(n.log, "--- vitamintest: restarting nats server ---\n")
	if err := n.start(); err != nil {
		t.Fatalf("vitamintest: restart nats: %v", err)
	}
}

// Connect returns a client connection to the server that reconnects for
// ever (so it survives Restart) and is closed when the test ends.
func (n *NATS) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		t.Fatalf("vitamintest: connect to nats at %s: %v", n.URL, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsLogger writes the server's log lines into a Buffer.
type natsLogger struct{ w *Buffer }

func (l natsLogger) logf(level, format string, v ...any) {
	fmt.Fprintf(l.w, "%s [%s] %s\n", time.Now().Format("15:04:05.000"), level, fmt.Sprintf(format, v...))
}

func (l natsLogger) Noticef(format string, v ...any) { l.logf("INF", format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.logf("WRN", format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.logf("FTL", format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.logf("ERR", format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.logf("DBG", format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.logf("TRC", format, v...) }
