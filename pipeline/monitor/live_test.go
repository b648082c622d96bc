package monitor

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// TestLiveRollingWindowAndGauges: observations fall in sub-windows; the
// window covers the last Buckets of them; the gauges are the window's null
// rate and count, and PSI, KS and null-rate change against the baseline
// once MinValues values are in.
func TestLiveRollingWindowAndGauges(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := NewStats()
	for v := range 100 {
		base.AddValue(float64(v))
	}
	reg := prometheus.NewRegistry()
	l, err := NewLive(reg, LiveOptions{Window: 10 * time.Minute, Buckets: 10, MinValues: 50, Now: func() time.Time { return now },
		Baselines: map[string]Baseline{"a@1": {Name: "train@1", Stats: base}}})
	if err != nil {
		t.Fatal(err)
	}
	add := func(id string, vs ...float64) {
		b := l.NewBatch()
		for _, v := range vs {
			if v < 0 {
				b.Add(id, strings.Split(id, "@")[0], 1, nil)
			} else {
				b.Add(id, strings.Split(id, "@")[0], 1, &v)
			}
		}
		if err := l.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	var shifted []float64
	for v := range 40 {
		shifted = append(shifted, float64(v+1000))
	}
	add("a@1", shifted...)
	add("b@1", 1, -1, -1, -1)
	// 40 values: below MinValues, no drift yet.
	if n := testutil.CollectAndCount(reg, "featurepipe_feature_drift_psi"); n != 0 {
		t.Fatalf("%d PSI series with 40 values, want none below MinValues", n)
	}
	now = now.Add(3 * time.Minute)
	add("a@1", shifted...)
	want := `
# HELP featurepipe_feature_null_rate Fraction of the feature version's published values over the statistics window that are null.
# TYPE featurepipe_feature_null_rate gauge
featurepipe_feature_null_rate{feature="a",version="1"} 0
featurepipe_feature_null_rate{feature="b",version="1"} 0.75
# HELP featurepipe_feature_values Published values of the feature version observed over the statistics window (after sampling).
# TYPE featurepipe_feature_values gauge
featurepipe_feature_values{feature="a",version="1"} 80
featurepipe_feature_values{feature="b",version="1"} 4
`
	if err := testutil.CollectAndCompare(reg, strings.NewReader(want), "featurepipe_feature_null_rate", "featurepipe_feature_values"); err != nil {
		t.Fatal(err)
	}
	if ks := testutil.ToFloat64(onlyOne(t, reg, "featurepipe_feature_drift_ks")); ks != 1 {
		t.Fatalf("KS %v of disjoint values, want 1", ks)
	}
	if psi := testutil.ToFloat64(onlyOne(t, reg, "featurepipe_feature_drift_psi")); psi < 2 {
		t.Fatalf("PSI %v of values all above the baseline's, want > 2", psi)
	}
	// Eight minutes on, the first sub-window (and b's only one) left the
	// 10-minute window: a has 40 values, b none.
	now = now.Add(8 * time.Minute)
	if w := l.Window("a@1"); w == nil || w.Count() != 40 {
		t.Fatalf("window of a@1: %v values, want 40", w)
	}
	if w := l.Window("b@1"); w != nil {
		t.Fatalf("b@1 still has %d values after its sub-window left the window", w.Count())
	}
	if _, err := NewLive(nil, LiveOptions{Sample: 1.5}); err == nil {
		t.Fatal("sample 1.5 accepted")
	}
}

func onlyOne(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.GetMetric()) != 1 {
				t.Fatalf("%s: %d series, want 1", name, len(mf.GetMetric()))
			}
			labels := mf.GetMetric()[0].GetLabel()
			if len(labels) != 3 || labels[0].GetValue() != "train@1" {
				t.Fatalf("%s labels %v", name, labels)
			}
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

// TestLiveResolvesBaselines: a version without an explicit baseline gets
// Resolve's, asked again at every scrape (a newer dataset is picked up
// without a restart); an explicit baseline wins over Resolve's; the
// baseline label and Snapshot name the one used.
func TestLiveResolvesBaselines(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	uniform := func(lo int) *Stats {
		s := NewStats()
		for v := range 100 {
			s.AddValue(float64(lo + v))
		}
		return s
	}
	var mu sync.Mutex
	resolved := map[string]Baseline{"a@1": {Name: "old@1", Stats: uniform(1000)}, "b@1": {Name: "old@1", Stats: uniform(1000)}}
	reg := prometheus.NewRegistry()
	l, err := NewLive(reg, LiveOptions{MinValues: 50, Now: func() time.Time { return now },
		Baselines: map[string]Baseline{"b@1": {Name: "pinned.manifest.json", Stats: uniform(0)}},
		Resolve: func(id string) (Baseline, bool) {
			mu.Lock()
			defer mu.Unlock()
			b, ok := resolved[id]
			return b, ok
		}})
	if err != nil {
		t.Fatal(err)
	}
	b := l.NewBatch()
	for _, id := range []string{"a@1", "b@1", "c@1"} {
		for v := range 100 {
			x := float64(v)
			b.Add(id, strings.Split(id, "@")[0], 1, &x)
		}
	}
	if err := l.Commit(b); err != nil {
		t.Fatal(err)
	}
	psi := func() map[string]string { return testkit.DriftLevels(t, reg) }
	// Live values 0..99: a against its resolved baseline 1000..1099 has
	// drifted; b is pinned to 0..99 (stable); c has no baseline at all.
	want := map[string]string{"a@1": "old@1 drifted", "b@1": "pinned.manifest.json stable"}
	if got := psi(); !maps.Equal(got, want) {
		t.Fatalf("PSI series %v, want %v", got, want)
	}
	// A newer dataset with a's live distribution: the next scrape uses it.
	mu.Lock()
	resolved["a@1"] = Baseline{Name: "new@1", Stats: uniform(0)}
	mu.Unlock()
	want["a@1"] = "new@1 stable"
	if got := psi(); !maps.Equal(got, want) {
		t.Fatalf("PSI series after a newer dataset %v, want %v", got, want)
	}
	names := map[string]string{}
	for _, f := range l.Snapshot().Features {
		if f.Baseline != nil {
			names[f.ID] = f.Baseline.Name
		}
	}
	if want := map[string]string{"a@1": "new@1", "b@1": "pinned.manifest.json"}; !maps.Equal(names, want) {
		t.Fatalf("snapshot baselines %v, want %v", names, want)
	}
}

// TestLiveLongWindow: the long window (24h in hourly sub-windows) keeps
// what the short one has dropped, its statistics are those of the values
// in its sub-windows, and a version with values in it only is still in the
// Snapshot (without window statistics).
func TestLiveLongWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	l, err := NewLive(nil, LiveOptions{Window: 10 * time.Minute, Buckets: 10, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var values []*float64
	add := func(id string, at time.Duration, vs ...float64) []*float64 {
		now = t0.Add(at)
		b := l.NewBatch()
		var out []*float64
		for _, v := range vs {
			if v < 0 {
				b.Add(id, "a", 1, nil)
				out = append(out, nil)
			} else {
				b.Add(id, "a", 1, &v)
				out = append(out, &v)
			}
		}
		if err := l.Commit(b); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := add("a@1", 0, 1, 2, 3, -1)
	second := add("a@1", 3*time.Hour, 10, 20, 30)
	third := add("a@1", 20*time.Hour, 100, -1, 300)
	add("b@1", 20*time.Hour, 7)
	values = append(append(append(values, first...), second...), third...)
	checkBruteForce(t, "long window at 20h", l.LongWindow("a@1"), values)
	checkBruteForce(t, "window at 20h", l.Window("a@1"), third)

	// At 24h30m the hour of the first values has left the 24h window; the
	// 10-minute window is empty.
	now = t0.Add(24*time.Hour + 30*time.Minute)
	checkBruteForce(t, "long window at 24h30m", l.LongWindow("a@1"), append(second, third...))
	if w := l.Window("a@1"); w != nil {
		t.Errorf("10-minute window at 24h30m: %d values, want none", w.Count())
	}
	snap := l.Snapshot()
	if snap.Window != "10m0s" || snap.LongWindow != "24h0m0s" || len(snap.Features) != 2 {
		t.Fatalf("snapshot %s/%s with %d versions, want 10m0s/24h0m0s with 2", snap.Window, snap.LongWindow, len(snap.Features))
	}
	b, err := json.Marshal([]Snapshot{snap, snap})
	if err != nil {
		t.Fatal(err)
	}
	var two []Snapshot
	if err := json.Unmarshal(b, &two); err != nil {
		t.Fatal(err)
	}
	if two[0].Features[0].Window != nil {
		t.Errorf("a@1 has window statistics with no value in the window")
	}
	// Two workers' snapshots merge: every value twice.
	long, window, err := MergeLong(two)
	if err != nil || window != "24h0m0s" {
		t.Fatalf("MergeLong: %v, window %q", err, window)
	}
	twice := append(append(second, third...), append(second, third...)...)
	checkBruteForce(t, "merged long window", long["a@1"], twice)
	if stats, _, _, _ := Merge(two); len(stats) != 0 {
		t.Errorf("Merge found window statistics of %d versions, want none", len(stats))
	}

	// LongWindow < 0: none kept.
	none, err := NewLive(nil, LiveOptions{LongWindow: -1})
	if err != nil {
		t.Fatal(err)
	}
	v := 1.0
	bt := none.NewBatch()
	bt.Add("a@1", "a", 1, &v)
	if err := none.Commit(bt); err != nil {
		t.Fatal(err)
	}
	if s := none.Snapshot(); s.LongWindow != "" || s.Features[0].Long != nil || none.LongWindow("a@1") != nil {
		t.Errorf("long window statistics without a long window: %+v", s)
	}
}

// BenchmarkLiveCommit: one publication's batch (10 versions, 100 values
// each) committed with the 1h window only, and with the 24h window too.
func BenchmarkLiveCommit(b *testing.B) {
	for _, c := range []struct {
		name string
		long time.Duration
	}{{"1h", -1}, {"1h+24h", 0}} {
		b.Run(c.name, func(b *testing.B) {
			l, err := NewLive(nil, LiveOptions{LongWindow: c.long})
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, 10)
			for i := range ids {
				ids[i] = fmt.Sprintf("f%d@1", i)
			}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				bt := l.NewBatch()
				for i, id := range ids {
					for v := range 100 {
						x := float64(v*(i+1)) + 0.5
						bt.Add(id, id, 1, &x)
					}
				}
				if err := l.Commit(bt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
