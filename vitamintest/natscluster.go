package vitamintest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is a NATS cluster of three servers with JetStream, embedded
// in the test process on loopback, as production runs one for replicated
// (R3) streams and KV buckets. Each member has its own store directory and
// ports, and can be stopped and started again like a [NATS] — to move a
// stream's leader, say. It is safe for concurrent use.
type NATSCluster struct {
	// Members are the three servers, named "n1" to "n3".
	Members []*NATS
	// URLs lists every member's client URL, comma-separated, as
	// nats.Connect takes them.
	URLs string
}

// StartNATSCluster starts the cluster and waits until its JetStream has a
// meta leader, every member is healthy (see Healthy) and it can place a
// stream's three replicas. The servers are shut down when the test ends;
// their logs are attached to the output of a failed test.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	// A free port may be taken by someone else before a member binds it:
	// start the whole cluster again, with other ports, a few times.
	var cl *NATSCluster
	var err error
	for range 3 {
		if cl, err = startNATSCluster(t); err == nil {
			break
		}
		for _, n := range cl.Members {
			n.Stop()
		}
	}
	if err != nil {
		t.Fatalf("vitamintest: start nats cluster: %v", err)
	}
	nc := cl.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
	cl.Healthy(t)
	// The meta leader places replicas only on peers whose statistics it
	// has received, which may come after they report healthy: wait until
	// an R3 stream can be placed.
	Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "vitamintest_placement", Subjects: []string{"vitamintest.placement"}, Replicas: len(cl.Members)}); err != nil {
			return err
		}
		return js.DeleteStream(ctx, "vitamintest_placement")
	})
	return cl
}

// startNATSCluster starts the three members on free ports.
func startNATSCluster(t testing.TB) (*NATSCluster, error) {
	t.Helper()
	const size = 3
	cluster := make([]int, size)
	client := make([]int, size)
	for i := range size {
		cluster[i], client[i] = FreePort(t), FreePort(t)
	}
	var routes []*url.URL
	for _, p := range cluster {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(p)})
	}
	cl := &NATSCluster{}
	var urls []string
	for i := range size {
		name := "n" + strconv.Itoa(i+1)
		n := &NATS{StoreDir: t.TempDir(), log: &Buffer{}}
		n.opts = server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       client[i],
			JetStream:  true,
			StoreDir:   n.StoreDir,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "vitamin-test",
				Host: "127.0.0.1",
				Port: cluster[i],
			},
			Routes: routes,
		}
		n.URL = fmt.Sprintf("nats://127.0.0.1:%d", client[i])
		urls = append(urls, n.URL)
		attachOnFailure(t, "nats server "+name, n.log)
		t.Cleanup(n.Stop)
		cl.Members = append(cl.Members, n)
	}
	cl.URLs = strings.Join(urls, ",")
	// A clustered server waits for its routes before it is ready: start
	// them together.
	errs := make(chan error, size)
	for _, n := range cl.Members {
		go func() { errs <- n.start() }()
	}
	var first error
	for range size {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return cl, first
}

// Connect returns a client connection to the cluster that knows every
// member, reconnects for ever and is closed when the test ends.
func (cl *NATSCluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(cl.URLs, opts...)
	if err != nil {
		t.Fatalf("vitamintest: connect to nats cluster at %s: %v", cl.URLs, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Member returns the member named name ("n1"…), or nil.
func (cl *NATSCluster) Member(name string) *NATS {
	for _, n := range cl.Members {
		if n.opts.ServerName == name {
			return n
		}
	}
	return nil
}

// StreamLeader returns the member that leads stream now, waiting up to 30s
// for it to have one. A KV bucket's stream is "KV_" + the bucket's name.
func (cl *NATSCluster) StreamLeader(t testing.TB, js jetstream.JetStream, stream string) *NATS {
	t.Helper()
	var leader *NATS
	Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("stream " + stream + " has no leader")
		}
		if leader = cl.Member(info.Cluster.Leader); leader == nil {
			return fmt.Errorf("stream %s is led by %q, not a member", stream, info.Cluster.Leader)
		}
		return nil
	})
	return leader
}

// Name is the server's name.
func (n *NATS) Name() string { return n.opts.ServerName }

// Healthy waits up to 60s until every member runs and reports itself
// healthy as its /healthz does: its JetStream is current with the meta
// leader and with every stream and consumer replica it holds. A rolling
// restart waits for this before it stops the next server; stopping one
// while another is still catching up leaves the streams without a quorum.
func (cl *NATSCluster) Healthy(t testing.TB) {
	t.Helper()
	Eventually(t, 60*time.Second, func() error {
		for _, n := range cl.Members {
			n.mu.Lock()
			srv := n.srv
			n.mu.Unlock()
			if srv == nil {
				return errors.New(n.Name() + " is stopped")
			}
			if h := srv.Healthz(nil); h.Error != "" {
				return fmt.Errorf("%s: %s", n.Name(), h.Error)
			}
		}
		return nil
	})
}
