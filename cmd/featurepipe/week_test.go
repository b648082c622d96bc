package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// TestWorkerWeekBaselineKeepsHoursInItsStore: `worker --baseline week`
// serves each version's last 24 hours in GET /v1/stats ("week") and, when
// it stops, leaves those hours in its store, where a restarted worker
// finds them (monitor.NewLive restores them: TestWeekBaseline).
func TestWorkerWeekBaselineKeepsHoursInItsStore(t *testing.T) {
	f := newProduceFixture(t)
	now := time.Now().UnixMilli()
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf(`{"user_id":"u-%d","merchant_id":"m1","amount":%d,"currency":"EUR","ts":%d}`, i, i, now-int64(i)*1000))
	}
	if code, _, stderr := execCLI(f.produceArgs("transactions", f.input(t, "events.jsonl", lines...))...); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 1)
	var errOut strings.Builder
	go func() {
		var out strings.Builder
		done <- run(ctx, []string{"worker", "--brokers", f.brokers, "--config", f.config, "--data", data, "--metrics", addr,
			"--baseline", "week", "--log-level", "error"}, &out, &errOut)
	}()
	const id = "txn_amount_last@1"
	var current int64
	deadline := time.Now().Add(90 * time.Second)
	for current < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("no week statistics of %s with 50 values in GET /v1/stats (last count %d)", id, current)
		}
		time.Sleep(200 * time.Millisecond)
		resp, err := http.Get("http://" + addr + "/v1/stats")
		if err != nil {
			continue
		}
		var s monitor.Snapshot
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, fs := range s.Features {
			if fs.ID == id && fs.Week != nil && fs.Week.Current != nil {
				current = fs.Week.Current.Count()
			}
		}
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("worker exit %d: %s", code, errOut.String())
	}
	st, err := state.Open(filepath.Join(data, "worker"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var saved int64
	err = monitor.StoreHours(st).LoadHours(func(h monitor.Hour) error {
		if h.ID == id {
			var s monitor.Stats
			if err := json.Unmarshal(h.Stats, &s); err != nil {
				return err
			}
			saved += s.Count()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if saved < current {
		t.Fatalf("%d values of %s saved in the worker's store at shutdown, want the %d it served", saved, id, current)
	}
}

// TestMonitorWeekEarlier: monitor merges the workers' week statistics and
// shows the last 24 hours against the same hours a week earlier; a shift
// crosses the PSI threshold (exit 2), none does not.
func TestMonitorWeekEarlier(t *testing.T) {
	cfg := testkitConfigOneFeature(t)
	worker := func(shift float64) string {
		now := time.Now().Add(-7 * 24 * time.Hour)
		live, err := monitor.NewLive(nil, monitor.LiveOptions{Week: true, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		add := func(shift float64) {
			b := live.NewBatch()
			for _, v := range seq(0, 300) {
				x := *v + shift
				b.Add("amount_last@1", "amount_last", 1, &x)
			}
			if err := live.Commit(b); err != nil {
				t.Fatal(err)
			}
		}
		add(0)
		now = now.Add(7 * 24 * time.Hour)
		add(shift)
		srv := httptestServer(t, live.Handler(nil))
		return srv
	}
	for shift, wantCode := range map[float64]int{0: 0, 50: 2} {
		addrs := worker(shift) + "," + worker(shift)
		var out, errb strings.Builder
		code := run(context.Background(), []string{"monitor", "--config", cfg, "--workers", addrs, "--json"}, &out, &errb)
		if code != wantCode {
			t.Fatalf("shift %v: exit %d, want %d: %s %s", shift, code, wantCode, out.String(), errb.String())
		}
		var rep struct {
			Features []monitor.FeatureReport `json:"features"`
		}
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			t.Fatal(err)
		}
		w := rep.Features[0].Week
		if w == nil || w.PSI == nil || w.Baseline != monitor.WeekBaselineName || w.Summary.Count != 600 {
			t.Fatalf("shift %v: week report %+v, want 600 values (two workers) against %q", shift, w, monitor.WeekBaselineName)
		}
		if crossed := len(w.Crossed) > 0; crossed != (shift > 0) || (shift > 0) != (*w.PSI > 0.2) {
			t.Errorf("shift %v: week PSI %v, crossed %v", shift, *w.PSI, w.Crossed)
		}
		out.Reset()
		run(context.Background(), []string{"monitor", "--config", cfg, "--workers", addrs, "--sparkline", "never"}, &out, &errb)
		if !strings.Contains(out.String(), "24h vs week earlier") {
			t.Errorf("table without the week row:\n%s", out.String())
		}
	}
}

func testkitConfigOneFeature(t *testing.T) string {
	return testkit.WriteConfig(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx, schema: transaction.avsc, event_time: ts}
features:
  - {name: amount_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: o, description: d}
`, nil).Path
}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
