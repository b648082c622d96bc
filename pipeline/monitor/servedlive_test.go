package monitor

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
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
