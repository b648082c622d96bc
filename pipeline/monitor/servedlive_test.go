package monitor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// TestServedLiveRollingWindows: entries arriving in any order land in the
// rolling 1h and 24h windows by request time and match the statistics
// computed directly from the values in each window (entries well inside
// the windows' edges: 1h covers 50 to 60 minutes, 24h 23 to 24 hours);
// older entries, even when they arrive after newer ones whose sub-window
// shares their slot, count nowhere; future ones count as now.
func TestServedLiveRollingWindows(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 34, 0, 0, time.UTC)
	s := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(8, 9))
	type key struct {
		consumer string
		window   time.Duration
	}
	want := map[key][]*float64{}
	ages := []func() time.Duration{
		func() time.Duration { return time.Duration(rng.Int64N(int64(50 * time.Minute))) },
		func() time.Duration { return 70*time.Minute + time.Duration(rng.Int64N(int64(21*time.Hour))) },
		func() time.Duration {
			return 24*time.Hour + time.Minute + time.Duration(rng.Int64N(int64(6*24*time.Hour)))
		}, // older
		func() time.Duration { return -time.Duration(rng.Int64N(int64(time.Hour))) }, // future: now
	}
	for range 5000 {
		consumer := []string{"fraud-api", "ranking"}[rng.IntN(2)]
		var v *float64
		if rng.IntN(10) > 0 {
			x := 1 + rng.Float64()*100
			v = &x
		}
		age := ages[rng.IntN(len(ages))]()
		s.Add(entry(consumer, now.Add(-age).UnixMilli(), map[string]*float64{"a@1": v}))
		for _, w := range []time.Duration{time.Hour, 24 * time.Hour} {
			if max(age, 0) < w-10*time.Minute {
				want[key{consumer, w}] = append(want[key{consumer, w}], v)
			}
		}
	}
	for k, vs := range want {
		checkBruteForce(t, fmt.Sprintf("%s over %s", k.consumer, k.window), s.Stats("a@1", k.consumer, k.window), vs)
	}
	if got := s.Consumers("a@1"); fmt.Sprint(got) != "[fraud-api ranking]" {
		t.Errorf("consumers %v", got)
	}
	// An hour later, the entries of the first hour left the 1h window.
	now = now.Add(time.Hour)
	if st := s.Stats("a@1", "ranking", time.Hour); st != nil {
		t.Errorf("1h window an hour later: %d values, want none", st.Count())
	}
	// Reports: PSI against a baseline per consumer and window.
	base := NewStats()
	for range 1000 {
		base.AddValue(1 + rng.Float64()*100)
	}
	rs := s.Check("a@1", &Baseline{Name: "train@1", Stats: base}, Thresholds{PSI: 0.2, NullRate: 0.2}, 100)
	if len(rs) != 2 || rs[0].Consumer != "fraud-api" || rs[0].Window != "24h0m0s" || rs[0].PSI == nil || *rs[0].PSI > 0.2 || len(rs[0].Crossed) > 0 {
		t.Errorf("reports %+v: want each consumer's 24h, without drift", rs)
	}
	if rs[0].Label() != "served to fraud-api (24h)" {
		t.Errorf("label %q", rs[0].Label())
	}
}

// TestServedLiveLists: lists served are list statistics.
func TestServedLiveLists(t *testing.T) {
	s := NewServedLive(ServedLiveOptions{})
	e := entry("c", time.Now().UnixMilli(), map[string]*float64{})
	e.Lists = map[string][]float64{"l@1": {1, 2, 2}, "m@1": nil}
	s.Add(e)
	if sum := s.Stats("l@1", "c", time.Hour).Summary(); sum.Kind != KindList || sum.Elements != 3 || sum.Top[0] != (TopValue{"2", 2}) {
		t.Errorf("served list statistics %+v", sum)
	}
	if sum := s.Stats("m@1", "c", 24*time.Hour).Summary(); sum.Count != 1 || sum.Nulls != 1 {
		t.Errorf("a null list: %+v, want one null", sum)
	}
}

// BenchmarkServedLiveCheck: one version's report with three consumers whose
// 24h windows are full (every sub-window holds 200 values).
func BenchmarkServedLiveCheck(b *testing.B) {
	now := time.Now()
	s := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 1))
	for _, c := range []string{"a", "b", "c"} {
		for age := range 24 * 60 {
			for range 4 {
				x := 1 + rng.Float64()*1000
				s.Add(entry(c, now.Add(-time.Duration(age)*time.Minute).UnixMilli(), map[string]*float64{"a@1": &x}))
			}
		}
	}
	base := NewStats()
	for range 1000 {
		base.AddValue(1 + rng.Float64()*1000)
	}
	bl := &Baseline{Name: "t", Stats: base}
	b.ResetTimer()
	for b.Loop() {
		if len(s.Check("a@1", bl, Thresholds{PSI: 0.2}, 100)) != 6 {
			b.Fatal("want 6 reports")
		}
	}
}

// BenchmarkServedLiveAddRecord is the web catalog's follower observing one
// lookup-log record of the wrk benchmark's shape (README "Lookup handler":
// one key, 7 number features, one of them null) at the current time.
func BenchmarkServedLiveAddRecord(b *testing.B) {
	now := time.Now()
	s := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]lookuplog.Record, 1024)
	for i := range recs {
		r := &recs[i]
		r.Entity, r.Key, r.At, r.Consumer = "user", fmt.Sprintf("u%04d", i), now.UnixMilli(), "anonymous"
		for f := range 7 {
			r.Features = append(r.Features, lookuplog.Feature{ID: fmt.Sprintf("feature_%d@1", f), Value: rng.ExpFloat64() * 50, OK: f != 3})
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.AddRecord(&recs[i%len(recs)])
		i++
	}
}

// TestServedLiveSamplesPastThinAfter: past ServedThinAfter values in a
// sub-window, the statistics stay within the error ServedThinAfter states
// (checked at about twice it, so that a correct sample fails with a
// negligible probability), while counts and nulls stay exact; PSI against
// the values' own distribution stays near 0. A wrong weight (a value
// counted once instead of w times) moves the quantiles of this skewed,
// drifting stream by far more.
func TestServedLiveSamplesPastThinAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 34, 0, 0, time.UTC)
	s := NewServedLive(ServedLiveOptions{Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 30 * ServedThinAfter
	var xs []float64
	nulls := 0
	base := NewStats()
	var r lookuplog.Record
	for i := range n {
		// exponential whose scale grows along the stream: the later
		// (sampled, heavier) values differ from the first (exact) ones
		f := lookuplog.Feature{ID: "a@1"}
		if rng.IntN(10) > 0 {
			f.Value, f.OK = rng.ExpFloat64()*(1+3*float64(i)/n), true
			xs = append(xs, f.Value)
			base.AddValue(f.Value)
		} else {
			nulls++
		}
		r = lookuplog.Record{Entity: "user", Key: "k", At: now.UnixMilli() - int64(i%1000), Consumer: "c", Features: []lookuplog.Feature{f}}
		s.AddRecord(&r)
	}
	slices.Sort(xs)
	mean, m2 := 0.0, 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		m2 += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(m2 / float64(len(xs)-1))
	for _, w := range []time.Duration{time.Hour, 24 * time.Hour} {
		st := s.Stats("a@1", "c", w)
		sum := st.Summary()
		if sum.Count != n || sum.Nulls != int64(nulls) {
			t.Fatalf("%s: count %d nulls %d, want exactly %d and %d", w, sum.Count, sum.Nulls, n, nulls)
		}
		if math.Abs(*sum.Mean-mean) > 0.04*sd {
			t.Errorf("%s: mean %v, want %v ± 4%% of the standard deviation %v", w, *sum.Mean, mean, sd)
		}
		if math.Abs(*sum.Stddev-sd) > 0.08*sd {
			t.Errorf("%s: stddev %v, want %v ± 8%%", w, *sum.Stddev, sd)
		}
		for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99} {
			got := sum.Quantiles[fmt.Sprintf("p%d", int(math.Round(q*100)))]
			lo := xs[int(math.Max(0, q-0.02)*float64(len(xs)-1))] * (1 - 2*RelativeAccuracy)
			hi := xs[int(math.Min(1, q+0.02)*float64(len(xs)-1))] * (1 + 2*RelativeAccuracy)
			if got < lo || got > hi {
				t.Errorf("%s: p%v %v, want within ranks ±2%% of the true one: [%v, %v]", w, q*100, got, lo, hi)
			}
		}
		if psi, ok := PSI(base, st); !ok || psi > 0.01 {
			t.Errorf("%s: PSI against the exact statistics of the same values %v (ok %v), want < 0.01", w, psi, ok)
		}
	}
}
