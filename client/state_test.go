package client_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/vitamin-go/vitamin/client"
	"github.com/vitamin-go/vitamin/vitamintest"
)

// The monitor shows what the balancer knows: the instances, the one
// ejected (until when, and why), the discovery watch going stale; an
// operator puts the ejected instance back.
func TestMonitor(t *testing.T) {
	reg := newRegistry(t)
	good, bad := startHTTP(t, "good"), startHTTP(t, "bad")
	bad.fail.Store(true)
	register(t, reg, good.instance("inventory", nil))
	register(t, reg, bad.instance("inventory", nil))
	mon := client.NewMonitor()
	hc, err := client.NewHTTP("inventory", client.Config{Balancing: client.Balancing{
		Outlier: client.Outlier{Consecutive: 2, BaseEjection: time.Hour, MaxEjection: time.Hour}}},
		client.WithWatcher(reg), client.WithMonitor(mon), client.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseHTTP(hc)

	state := func() client.ServiceState {
		s := mon.Snapshot()
		if len(s) != 1 {
			t.Fatalf("%d services monitored, want 1", len(s))
		}
		return s[0]
	}
	deadline := time.Now().Add(10 * time.Second)
	for state().Ejected == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("bad not ejected: %+v", state())
		}
		resp, err := hc.Get("http://inventory/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	st := state()
	if st.Service != "inventory" || st.Kind != "http" || !st.Discovery.Seen || st.Discovery.Stale || len(st.Instances) != 2 {
		t.Fatalf("state %+v", st)
	}
	for _, in := range st.Instances {
		switch in.ID {
		case bad.id:
			if !in.Ejected || in.EjectReason != "consecutive failures" || time.Until(in.EjectedUntil) < 50*time.Minute {
				t.Errorf("bad %+v: want ejected for an hour for consecutive failures", in)
			}
		case good.id:
			if in.Ejected || in.Calls == 0 {
				t.Errorf("good %+v: want in rotation, with calls", in)
			}
		}
	}

	if err := mon.ClearEjection("inventory", good.id); !errors.Is(err, client.ErrNotEjected) {
		t.Errorf("ClearEjection of an instance in rotation: %v, want ErrNotEjected", err)
	}
	if err := mon.ClearEjection("inventory", bad.id); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.Ejected != 0 {
		t.Errorf("after ClearEjection: %d ejected, want 0", st.Ejected)
	}

	reg.SetUnreachable(errors.New("registry down"))
	vitamintest.Eventually(t, 10*time.Second, func() error {
		if d := state().Discovery; !d.Stale {
			return fmt.Errorf("the watch is not shown stale: %+v", d)
		}
		return nil
	})
	if d := state().Discovery; d.Err == "" || len(state().Instances) != 2 {
		t.Errorf("stale discovery %+v: want the error and the instances kept", d)
	}

	client.CloseHTTP(hc)
	if s := mon.Snapshot(); len(s) != 0 {
		t.Errorf("a closed client is still monitored: %+v", s)
	}
}
