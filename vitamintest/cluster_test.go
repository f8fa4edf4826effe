package vitamintest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vitamin-go/vitamin/vitamintest"
)

// TestNATSClusterMovesAStreamLeader: an R3 stream keeps its messages and
// takes publishes when its leader is stopped; the stream gets another
// leader, and the old one rejoins when it starts again, until the cluster
// reports itself healthy.
func TestNATSClusterMovesAStreamLeader(t *testing.T) {
	cl := vitamintest.StartNATSCluster(t)
	js, err := jetstream.New(cl.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Right after the start a member may be "offline" for a moment while
	// the routes settle: JetStream then refuses to place the replicas.
	vitamintest.Eventually(t, 20*time.Second, func() error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3})
		return err
	})
	publish := func(id string) {
		t.Helper()
		vitamintest.Eventually(t, 20*time.Second, func() error {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := js.Publish(pctx, "orders.placed", []byte(id), jetstream.WithMsgID(id))
			return err
		})
	}
	publish("1")
	leader := cl.StreamLeader(t, js, "ORDERS")
	leader.Stop()
	publish("2")
	vitamintest.Eventually(t, 20*time.Second, func() error {
		if now := cl.StreamLeader(t, js, "ORDERS"); now == leader {
			return errors.New("the stopped server still leads the stream")
		}
		return nil
	})
	leader.Restart(t)
	publish("3")
	vitamintest.Eventually(t, 20*time.Second, func() error {
		s, err := js.Stream(ctx, "ORDERS")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 3 {
			return fmt.Errorf("%d messages, want 3", info.State.Msgs)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("replica %s is not current", r.Name)
			}
		}
		if len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("%d replicas besides the leader, want 2", len(info.Cluster.Replicas))
		}
		return nil
	})
	cl.Healthy(t) // the restarted member has caught up with the meta leader and the stream
}
