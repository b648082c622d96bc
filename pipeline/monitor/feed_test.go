package monitor

import (
	"context"
	"errors"
	"testing"
)

func uniform(from, n int) *Stats {
	s := NewStats()
	for i := range n {
		s.AddValue(float64(from + i))
	}
	return s
}

// The feed merges the workers' snapshots (sum of windows, smallest
// freshness), reports per version, and keeps the last good merge when a
// refresh fails.
func TestFeedMergesAndKeepsTheLastGoodMerge(t *testing.T) {
	base := &Baseline{Name: "train@1", Stats: uniform(1, 1000)}
	fail := false
	f := NewFeed(func(context.Context) ([]Snapshot, error) {
		if fail {
			return nil, errors.New("worker down")
		}
		return []Snapshot{
			{Features: []FeatureSnapshot{{ID: "a@1", Window: uniform(1, 500), Baseline: base}}, Freshness: map[string]float64{"a@1": 9, "b@1": 4}},
			{Features: []FeatureSnapshot{{ID: "a@1", Window: uniform(501, 500)}}, Freshness: map[string]float64{"a@1": 2}},
		}, nil
	})
	if _, _, _, ok := f.Report("a@1", Thresholds{PSI: 0.2}); ok {
		t.Fatal("a report before the first refresh")
	}
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	th := Thresholds{PSI: 0.2, NullRate: 0.05, Freshness: 5}
	r, live, b, ok := f.Report("a@1", th)
	if !ok || live.Count() != 1000 || b != base {
		t.Fatalf("a@1: ok %v, %d values, baseline %v; want both workers' 1000 and train@1", ok, live.Count(), b)
	}
	if r.Freshness == nil || *r.Freshness != 2 || r.PSI == nil || *r.PSI > 0.01 || len(r.Crossed) != 0 {
		t.Fatalf("a@1 report %+v: want freshness 2 (the freshest worker), PSI about 0, nothing crossed", r)
	}
	// b@1: freshness only (no values in the window), past its threshold.
	r, live, _, ok = f.Report("b@1", th)
	if !ok || live != nil || r.Freshness == nil || *r.Freshness != 4 {
		t.Fatalf("b@1: ok %v live %v report %+v", ok, live, r)
	}
	if r, _, _, _ = f.Report("b@1", Thresholds{Freshness: 3}); len(r.Crossed) != 1 || r.Crossed[0] != "freshness" {
		t.Fatalf("b@1 with a 3s freshness threshold: crossed %v", r.Crossed)
	}
	if _, _, _, ok := f.Report("c@1", th); ok {
		t.Fatal("c@1 reported by no worker, yet ok")
	}
	fail = true
	if err := f.Refresh(context.Background()); err == nil {
		t.Fatal("a failed refresh returned no error")
	}
	if _, live, _, ok := f.Report("a@1", th); !ok || live.Count() != 1000 {
		t.Fatal("a failed refresh dropped the last merge")
	}
}

// The distribution is the share of each side's values per baseline
// decile: a tenth each for the same distribution, everything in the top
// bin for values above the baseline's range.
func TestDistribution(t *testing.T) {
	base := uniform(1, 1000)
	upper, b, l, ok := Distribution(base, uniform(1, 1000))
	if !ok || len(upper) != PSIBins-1 || len(b) != PSIBins || len(l) != PSIBins {
		t.Fatalf("ok %v, %d bounds, %d/%d bins", ok, len(upper), len(b), len(l))
	}
	for i := range b {
		if !near(b[i], 0.1, 0.02) || !near(l[i], 0.1, 0.02) {
			t.Fatalf("bin %d: baseline %.3f live %.3f, want about 0.1 each", i, b[i], l[i])
		}
	}
	_, _, l, _ = Distribution(base, uniform(5000, 100))
	if !near(l[len(l)-1], 1, 1e-9) {
		t.Fatalf("shifted live values: top bin %.3f, want 1", l[len(l)-1])
	}
	// A baseline of two values has two distinct deciles at most.
	upper, b, _, ok = Distribution(statsOf(1, 1, 1, 1, 1, 2, 2, 2, 2, 2), uniform(1, 2))
	if !ok || len(upper) > 2 || len(b) != len(upper)+1 {
		t.Fatalf("discrete baseline: bounds %v shares %v", upper, b)
	}
	if _, _, _, ok := Distribution(NewStats(), base); ok {
		t.Fatal("an empty baseline gave a distribution")
	}
}
