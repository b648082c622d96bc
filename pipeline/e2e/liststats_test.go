package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestListStatisticsWorkerAndBackfill: a worker's statistics of a last_k
// feature (the lists it publishes) carry the list lengths, the elements'
// distribution and the most frequent elements, as the backfill's manifest
// statistics do for the same feature, and the two compare without drift:
// every user's amounts are 42 twice and one amount of its own, so "42" is
// the top element on both sides and no list is longer than k.
func TestListStatisticsWorkerAndBackfill(t *testing.T) {
	k, cfg, cl := setup(t, listFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 7))
	const users = 200
	now := time.Now()
	var evs []event
	for i := range users {
		u := fmt.Sprintf("u%03d", i)
		at := now.Add(-2 * time.Hour).UnixMilli()
		evs = append(evs,
			event{"transactions", u, at + 1, 42},
			event{"transactions", u, at + 2, 42},
			event{"transactions", u, at + 3, 50 + 10*rng.NormFloat64()})
	}
	produceAt(t, cl, cfg, time.Time{}, evs...)

	dir := t.TempDir()
	var spine strings.Builder
	spine.WriteString("user_id,timestamp\n")
	for i := range users {
		fmt.Fprintf(&spine, "u%03d,%d\n", i, now.Add(-time.Hour).UnixMilli())
	}
	spinePath, out := filepath.Join(dir, "spine.csv"), filepath.Join(dir, "train.csv")
	if err := os.WriteFile(spinePath, []byte(spine.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := backfill.Run(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Out: out, Features: []string{"txn_last3_7d"}})
	if err != nil {
		t.Fatal(err)
	}
	baseline := m.Baselines("train")["txn_last3_7d@1"]
	if baseline.Stats == nil {
		t.Fatal("no manifest statistics of txn_last3_7d")
	}

	reg := prometheus.NewRegistry()
	live, err := monitor.NewLive(reg, monitor.LiveOptions{Baselines: map[string]monitor.Baseline{"txn_last3_7d@1": baseline}, MinValues: 50})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Registerer: reg, Stats: live}, filepath.Join(dir, "w"))
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	waitFor(t, "every event applied", 60*time.Second, func() bool { return testutil.ToFloat64(in) == float64(len(evs)) })
	waitQuiet(t, "txn_last3_7d statistics", time.Second, 60*time.Second, func() float64 {
		if s := live.Window("txn_last3_7d@1"); s != nil {
			return float64(s.Count())
		}
		return 0
	})
	for name, s := range map[string]*monitor.Stats{"worker": live.Window("txn_last3_7d@1"), "backfill": baseline.Stats} {
		sum := s.Summary()
		if sum.Kind != monitor.KindList || sum.Count < users || sum.Nulls != 0 {
			t.Fatalf("%s: %+v: want at least %d non-null lists", name, sum, users)
		}
		// 42 is counted within the summary's error (600 elements of 201
		// distinct values overflow its exact counters).
		if len(sum.Top) == 0 || sum.Top[0].Value != "42" || sum.Top[0].Count < 2*users-sum.TopError || sum.TopError > sum.Elements/(monitor.TopCapacity+1) {
			t.Errorf("%s: top elements %v (error %d), want 42 first with at least %d", name, sum.Top, sum.TopError, 2*users)
		}
		if sum.Length == nil || *sum.Length.Max > 3 || *sum.Length.Min < 1 || sum.Elements < sum.Count {
			t.Errorf("%s: lengths %+v, %d elements of %d lists: want 1 to 3 each", name, sum.Length, sum.Elements, sum.Count)
		}
	}
	if name, sum := "backfill", baseline.Stats.Summary(); sum.Count != users || sum.Elements != 3*users || *sum.Length.Mean != 3 {
		t.Errorf("%s: %+v: want %d lists of 3", name, sum, users)
	}
	r := monitor.Check("txn_last3_7d@1", live.Window("txn_last3_7d@1"), &baseline, -1, monitor.Thresholds{PSI: 0.2, NullRate: 0.05}, 50)
	if r.PSI == nil || *r.PSI > 0.2 || len(r.Crossed) > 0 {
		t.Errorf("worker against backfill: PSI %v, crossed %v: want a PSI below 0.2 (the same lists)", r.PSI, r.Crossed)
	}
}
