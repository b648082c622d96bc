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

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// driftPSI trains txn_last's baseline with a backfill over history (amounts
// N(100, 10)), then runs a worker with that baseline while live events
// arrive with amounts N(100 + shift, 10), and returns the PSI the worker
// exports once everything is published. With fromCatalog the worker finds
// the baseline as it does without --baseline, the newest dataset in the
// catalog with txn_last's statistics, instead of reading the manifest.
func driftPSI(t *testing.T, seed uint64, shift float64, fromCatalog bool) float64 {
	t.Helper()
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	const users = 300
	now := time.Now()
	user := func(i int) string { return fmt.Sprintf("user-%03d", i%users) }
	// History: two events per user between 3h and 2h ago.
	var hist []event
	for i := range 2 * users {
		hist = append(hist, event{"transactions", user(i), now.Add(-3*time.Hour + time.Duration(rng.Int64N(int64(time.Hour)))).UnixMilli(), 100 + 10*rng.NormFloat64()})
	}
	produceAt(t, cl, cfg, time.Time{}, hist...)

	// The training set: every user as of a time within the last hour.
	dir := t.TempDir()
	var spine strings.Builder
	spine.WriteString("user_id,timestamp\n")
	for i := range users {
		fmt.Fprintf(&spine, "%s,%d\n", user(i), now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))).UnixMilli())
	}
	spinePath, out := filepath.Join(dir, "spine.csv"), filepath.Join(dir, "train.csv")
	if err := os.WriteFile(spinePath, []byte(spine.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := backfill.Run(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Out: out, Features: []string{"txn_last"}}); err != nil {
		t.Fatal(err)
	}
	m, err := backfill.ReadManifest(backfill.ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}
	baselines := m.Baselines("train")
	if b := baselines["txn_last@1"]; b.Stats == nil || b.Stats.Count() != users {
		t.Fatalf("baseline of txn_last@1 from the manifest: %+v, want %d values", b, users)
	}

	// Live: the worker replays the history, then 1,500 new events arrive.
	reg := prometheus.NewRegistry()
	o := monitor.LiveOptions{Baselines: baselines}
	if fromCatalog {
		view, err := registry.Load(ctx, kafka.ConnOf(k.Brokers, cfg), cfg.Kafka.RegistryTopic, nil)
		if err != nil {
			t.Fatal(err)
		}
		o = monitor.LiveOptions{Resolve: func(id string) (monitor.Baseline, bool) {
			d, ok := view.NewestDatasetWith(id)
			return monitor.Baseline{Name: d.ID(), Stats: d.Statistics[id]}, ok
		}}
	}
	live, err := monitor.NewLive(reg, o)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Registerer: reg, Stats: live}, filepath.Join(dir, "w"))
	var evs []event
	for i := range 1500 {
		evs = append(evs, event{"transactions", user(i), now.Add(-time.Minute).UnixMilli() + int64(i), 100 + shift + 10*rng.NormFloat64()})
	}
	for i := 0; i < len(evs); i += 100 {
		produceAt(t, cl, cfg, time.Time{}, evs[i:i+100]...)
		time.Sleep(20 * time.Millisecond) // several publications, as a stream
	}
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	waitFor(t, "every event applied", 60*time.Second, func() bool { return testutil.ToFloat64(in) == float64(len(hist)+len(evs)) })
	waitQuiet(t, "txn_last statistics", time.Second, 60*time.Second, func() float64 {
		if s := live.Window("txn_last@1"); s != nil {
			return float64(s.Count())
		}
		return 0
	})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "featurepipe_feature_drift_psi" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if label(s, "feature") == "txn_last" && label(s, "baseline") == baselines["txn_last@1"].Name {
				return s.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no featurepipe_feature_drift_psi for txn_last against %q", baselines["txn_last@1"].Name)
	return 0
}

// TestDriftAgainstBackfillBaseline: PSI against the baseline a backfill
// recorded (in its manifest; for seed 2, in the catalog) stays below the
// 0.2 threshold when the live values follow the training distribution,
// over several seeds, and crosses it when they shift by one standard
// deviation.
func TestDriftAgainstBackfillBaseline(t *testing.T) {
	const threshold = 0.2
	for seed := uint64(1); seed <= 3; seed++ {
		same := driftPSI(t, seed, 0, seed == 2)
		shifted := driftPSI(t, seed, 10, seed == 2)
		t.Logf("seed %d: PSI %.4f without shift, %.4f shifted by one sigma", seed, same, shifted)
		if same >= threshold {
			t.Errorf("seed %d: PSI %.4f without a shift, want below %v", seed, same, threshold)
		}
		if shifted <= threshold {
			t.Errorf("seed %d: PSI %.4f with a one-sigma shift, want above %v", seed, shifted, threshold)
		}
	}
}
