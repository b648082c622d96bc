package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkTopInvariants checks TopValues' guarantees against the true counts.
func checkTopInvariants(t *testing.T, name string, tv *TopValues, truth map[string]int64, added int64) {
	t.Helper()
	if tv.Added() != added {
		t.Errorf("%s: added %d, want %d", name, tv.Added(), added)
	}
	if bound := added / (TopCapacity + 1); tv.Error() > bound {
		t.Errorf("%s: error %d above added/(capacity+1) = %d", name, tv.Error(), bound)
	}
	if len(tv.counts) > 2*TopCapacity {
		t.Errorf("%s: %d counters, bound %d", name, len(tv.counts), 2*TopCapacity)
	}
	for v, n := range truth {
		got := tv.counts[v]
		if got > n || got < n-tv.Error() {
			t.Errorf("%s: %q counted %d, true %d, error bound %d", name, v, got, n, tv.Error())
		}
	}
}

func TestTopValuesExactWhileFewDistinct(t *testing.T) {
	tv := NewTopValues()
	truth := map[string]int64{}
	for i := range 1000 {
		v := fmt.Sprint(i % 50)
		if i%3 == 0 {
			v = "hot"
		}
		tv.Add(v)
		truth[v]++
	}
	if tv.Error() != 0 {
		t.Fatalf("error %d with 51 distinct values: want exact counts", tv.Error())
	}
	top := tv.Top(3)
	if len(top) != 3 || top[0] != (TopValue{"hot", truth["hot"]}) {
		t.Fatalf("top %v, want hot first with %d", top, truth["hot"])
	}
	checkTopInvariants(t, "few distinct", tv, truth, 1000)
}

// Heavy values among many distinct ones (continuous list elements): the
// heavy ones are found, in order, within the error bound, whole or merged
// from parts (as the worker's sub-windows and several workers merge).
func TestTopValuesHeavyHittersAndMerge(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		whole := NewTopValues()
		parts := []*TopValues{NewTopValues(), NewTopValues(), NewTopValues()}
		truth := map[string]int64{}
		const n = 30000
		for i := range n {
			var v string
			switch r := rng.Float64(); {
			case r < 0.20:
				v = "a"
			case r < 0.30:
				v = "b"
			case r < 0.35:
				v = "c"
			default:
				v = NumberKey(rng.NormFloat64())
			}
			truth[v]++
			whole.Add(v)
			parts[i%len(parts)].Add(v)
		}
		merged := NewTopValues()
		for _, p := range parts {
			merged.Merge(p)
		}
		for name, tv := range map[string]*TopValues{"whole": whole, "merged": merged} {
			name = fmt.Sprintf("seed %d %s", seed, name)
			checkTopInvariants(t, name, tv, truth, n)
			top := tv.Top(3)
			if len(top) != 3 || top[0].Value != "a" || top[1].Value != "b" || top[2].Value != "c" {
				t.Errorf("%s: top %v, want a, b, c", name, top)
			}
		}
	}
}

func TestListStatistics(t *testing.T) {
	s := NewStats()
	s.AddList([]float64{1, 2, 2}, true)
	s.AddList([]float64{2}, true)
	s.AddList(nil, true) // an empty list is a value, of length 0
	s.AddList(nil, false)
	sum := s.Summary()
	if sum.Kind != KindList || sum.Count != 4 || sum.Nulls != 1 || sum.Elements != 4 {
		t.Fatalf("summary %+v: want a list kind, 4 lists, 1 null, 4 elements", sum)
	}
	if sum.Mean == nil || !near(*sum.Mean, 7.0/4, 1e-12) || *sum.Min != 1 || *sum.Max != 2 {
		t.Errorf("element moments %+v: want mean 1.75, min 1, max 2", sum)
	}
	if sum.Length == nil || sum.Length.Count != 3 || !near(*sum.Length.Mean, 4.0/3, 1e-12) || *sum.Length.Max != 3 || *sum.Length.Min != 0 {
		t.Errorf("length %+v: want 3 lists of mean length 4/3, 0 to 3", sum.Length)
	}
	if want := []TopValue{{"2", 3}, {"1", 1}}; fmt.Sprint(sum.Top) != fmt.Sprint(want) || sum.TopError != 0 {
		t.Errorf("top %v (error %d), want %v exactly", sum.Top, sum.TopError, want)
	}

	// Through JSON (the manifest, the catalog, GET /v1/stats) and merged.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Merge(s); err != nil {
		t.Fatal(err)
	}
	m := back.Summary()
	if m.Count != 8 || m.Elements != 8 || m.Length.Count != 6 || !near(*m.Mean, 7.0/4, 1e-12) || m.Top[0] != (TopValue{"2", 6}) {
		t.Errorf("restored and merged %+v: want everything doubled", m)
	}
	if err := back.Merge(statsOf(1, 2, 3)); err == nil || !strings.Contains(err.Error(), "list values with number values") {
		t.Errorf("merging numbers into lists: %v, want an error naming both kinds", err)
	}

	// A drifted list feature: its elements drift.
	base, same, shifted := NewStats(), NewStats(), NewStats()
	rng := rand.New(rand.NewPCG(3, 3))
	for range 2000 {
		l := func(d float64) []float64 { return []float64{rng.NormFloat64() + d, rng.NormFloat64() + d} }
		base.AddList(l(0), true)
		same.AddList(l(0), true)
		shifted.AddList(l(2), true)
	}
	if p, ok := PSI(base, same); !ok || p > 0.1 {
		t.Errorf("PSI of unshifted lists %v (ok %v), want < 0.1", p, ok)
	}
	if p, ok := PSI(base, shifted); !ok || p < 0.2 {
		t.Errorf("PSI of shifted lists %v (ok %v), want > 0.2", p, ok)
	}
}

func TestStringStatistics(t *testing.T) {
	s := NewStats()
	for _, v := range []string{"visa", "visa", "amex", "visa", ""} {
		s.AddString(v, true)
	}
	s.AddString("", false)
	sum := s.Summary()
	if sum.Kind != KindString || sum.Count != 6 || sum.Nulls != 1 || sum.Mean != nil || sum.Quantiles != nil {
		t.Fatalf("summary %+v: want 6 strings, 1 null, no moments", sum)
	}
	if want := []TopValue{{"visa", 3}, {"", 1}, {"amex", 1}}; fmt.Sprint(sum.Top) != fmt.Sprint(want) {
		t.Errorf("top %v, want %v", sum.Top, want)
	}
	if _, ok := PSI(s, s); ok {
		t.Error("PSI of strings: want none (no numbers)")
	}
	b, _ := json.Marshal(s)
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Summary(); got.Kind != KindString || got.Count != 6 || got.Mean != nil || fmt.Sprint(got.Top) != fmt.Sprint(sum.Top) {
		t.Errorf("restored %+v, want %+v", got, sum)
	}
}

// Statistics written before kinds existed (numbers) restore as numbers.
func TestStatsWithoutKindRestoreAsNumbers(t *testing.T) {
	b, _ := json.Marshal(statsOf(1, 2, 3, math.NaN()))
	var old map[string]any
	_ = json.Unmarshal(b, &old)
	delete(old, "kind")
	b, _ = json.Marshal(old)
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Merge(statsOf(4)); err != nil {
		t.Fatal(err)
	}
	if got := back.Summary(); got.Kind != KindNumber || got.Count != 5 || !near(*got.Mean, 2.5, 1e-12) {
		t.Errorf("restored %+v: want 5 numbers of mean 2.5", got)
	}
}
