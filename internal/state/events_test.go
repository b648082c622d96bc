package state

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A flush that fails on a broken disk is a Pebble background error: it used
// to be dropped by a no-op logger; now it is logged and counted.
func TestBackgroundErrorsAreLoggedAndCounted(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	st, err := Open("db", Options{FS: fs, NoSync: true, Log: zap.New(core), Registerer: reg, Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	if err := b.Set([]byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if _, err := st.DB().AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	counter := func() float64 {
		return testutil.ToFloat64(mustCounter(t, reg).WithLabelValues("worker", EventBackgroundError))
	}
	for deadline := time.Now().Add(30 * time.Second); counter() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no background error counted for a failing flush")
		}
		time.Sleep(10 * time.Millisecond)
	}
	failing.Store(false) // let Pebble's retry succeed, then close cleanly
	if err := st.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "background error") && e.ContextMap()["store"] == "worker" &&
			strings.Contains(e.ContextMap()["error"].(string), "injected") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no background error logged; logs: %v", logs.All())
	}
}

// mustCounter returns the registered featurepipe_state_events_total.
func mustCounter(t *testing.T, reg *prometheus.Registry) *prometheus.CounterVec {
	t.Helper()
	c, err := stateEvents(reg) // the registered one, as a second store would get it
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The other events go to the same log and counter: a slow disk and a write
// stall, through the listener Pebble calls.
func TestDiskSlowAndWriteStallAreLoggedAndCounted(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	c, err := stateEvents(reg)
	if err != nil {
		t.Fatal(err)
	}
	el := eventListener(zap.New(core), c.MustCurryWith(prometheus.Labels{"store": "view"}))
	el.DiskSlow(pebble.DiskSlowInfo{Path: "000001.log", OpType: vfs.OpTypeSync, Duration: 7 * time.Second})
	el.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	el.WriteStallEnd()
	el.BackgroundError(errorfs.ErrInjected)
	for ev, want := range map[string]float64{EventDiskSlow: 1, EventWriteStall: 1, EventBackgroundError: 1, EventDataCorruption: 0} {
		if got := testutil.ToFloat64(c.WithLabelValues("view", ev)); got != want {
			t.Errorf("%s counted %v, want %v", ev, got, want)
		}
	}
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "|")
	for _, w := range []string{"disk is slow", "writes stalled", "writes resumed", "background error"} {
		if !strings.Contains(all, w) {
			t.Errorf("logs %q lack %q", all, w)
		}
	}
	// A second store in the process shares the counter.
	if c2, err := stateEvents(reg); err != nil || c2 != c {
		t.Fatalf("second registration: %v, %v", c2 == c, err)
	}
}
