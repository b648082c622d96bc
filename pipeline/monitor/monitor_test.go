package monitor

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestMapping(t *testing.T) {
	if logMappingErr != nil || logMapping == nil {
		t.Fatalf("sketch mapping at accuracy %v: %v", RelativeAccuracy, logMappingErr)
	}
}

func TestPSIOfCountsHandComputed(t *testing.T) {
	for name, c := range map[string]struct {
		base, live []float64
		want       float64
	}{
		// b = 10.5/21 each; l = 5.5/21, 15.5/21:
		// (5.5-10.5)/21*ln(5.5/10.5) + (15.5-10.5)/21*ln(15.5/10.5)
		"a quarter of the mass moves":   {[]float64{10, 10}, []float64{5, 15}, 0.24668855516351806},
		"identical distributions are 0": {[]float64{3, 3}, []float64{3, 3}, 0},
		// Empty bins stay finite: 0.8*ln(1/9)*-1 + 0.8*ln(9) = 1.6 ln 9.
		"all mass swaps bins, empty bins smoothed": {[]float64{4, 0}, []float64{0, 4}, 1.6 * math.Log(9)},
	} {
		if got := psiOfCounts(c.base, c.live); !near(got, c.want, 1e-12) {
			t.Errorf("%s: PSI %v, want %v", name, got, c.want)
		}
	}
}

func TestKSOfPointsHandComputed(t *testing.T) {
	pts := func(vs ...float64) []point {
		var out []point
		for _, v := range vs {
			out = append(out, point{v, 1})
		}
		return out
	}
	for name, c := range map[string]struct {
		a, b []point
		want float64
	}{
		"shift by one of three":            {pts(1, 2, 3), pts(2, 3, 4), 1.0 / 3},
		"disjoint":                         {pts(1, 2), pts(3, 4), 1},
		"identical":                        {pts(1, 2, 3), pts(1, 2, 3), 0},
		"weights: 3 of 4 at 1 against 1/2": {[]point{{1, 3}, {2, 1}}, []point{{1, 1}, {2, 1}}, 0.25},
	} {
		if got := ksOfPoints(c.a, c.b); !near(got, c.want, 1e-12) {
			t.Errorf("%s: KS %v, want %v", name, got, c.want)
		}
	}
}

func statsOf(vs ...float64) *Stats {
	s := NewStats()
	for _, v := range vs {
		s.AddValue(v)
	}
	return s
}

// TestPSIAndKSOnDeciles: a baseline 1..10 has one value per decile bin; a
// live sample all at 10 puts everything in the last bin:
// 9 * (1/30 - 1/10) * ln(1/3) + (7/10 - 1/10) * ln 7 (smoothing 0.5 of 15).
func TestPSIAndKSOnDeciles(t *testing.T) {
	base := statsOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	live := statsOf(10, 10, 10, 10, 10, 10, 10, 10, 10, 10)
	psi, ok := PSI(base, live)
	want := 9*(1.0/30-0.1)*math.Log(1.0/3) + 0.6*math.Log(7)
	if !ok || !near(psi, want, 1e-9) {
		t.Fatalf("PSI %v (ok %v), want %v", psi, ok, want)
	}
	if psi, _ := PSI(base, statsOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)); psi != 0 {
		t.Fatalf("PSI of the same values %v, want 0", psi)
	}
	if ks, ok := KS(base, live); !ok || !near(ks, 0.9, 1e-12) {
		t.Fatalf("KS %v (ok %v), want 0.9", ks, ok)
	}
	if _, ok := PSI(base, NewStats()); ok {
		t.Fatal("PSI against no live values reported ok")
	}
}

// TestPSIDetectsAShiftAndOnlyAShift: normal samples; over several seeds a
// same-distribution live sample stays far below 0.2 and a half-sigma
// shift crosses it.
func TestPSIDetectsAShiftAndOnlyAShift(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		base, same, shifted := NewStats(), NewStats(), NewStats()
		for i := 0; i < 20000; i++ {
			base.AddValue(100 + 10*rng.NormFloat64())
		}
		for i := 0; i < 5000; i++ {
			same.AddValue(100 + 10*rng.NormFloat64())
			shifted.AddValue(105 + 10*rng.NormFloat64())
		}
		psiSame, _ := PSI(base, same)
		psiShift, _ := PSI(base, shifted)
		ksSame, _ := KS(base, same)
		ksShift, _ := KS(base, shifted)
		if psiSame > 0.02 || psiShift < 0.2 {
			t.Errorf("seed %d: PSI %.4f without shift (want < 0.02), %.4f with a half-sigma shift (want > 0.2)", seed, psiSame, psiShift)
		}
		if ksSame > 0.05 || ksShift < 0.15 {
			t.Errorf("seed %d: KS %.4f without shift (want < 0.05), %.4f with a half-sigma shift (want > 0.15)", seed, ksSame, ksShift)
		}
	}
}

func TestSummary(t *testing.T) {
	s := statsOf(1, 2, 3, 4)
	s.AddNull()
	s.Add(nil)
	x := math.NaN()
	s.Add(&x)
	sum := s.Summary()
	if sum.Count != 7 || sum.Nulls != 3 || !near(sum.NullRate, 3.0/7, 1e-12) {
		t.Fatalf("count %d nulls %d rate %v, want 7, 3, 3/7", sum.Count, sum.Nulls, sum.NullRate)
	}
	if *sum.Mean != 2.5 || !near(*sum.Stddev, math.Sqrt(5.0/3), 1e-12) || *sum.Min != 1 || *sum.Max != 4 {
		t.Fatalf("mean %v stddev %v min %v max %v, want 2.5, sqrt(5/3), 1, 4", *sum.Mean, *sum.Stddev, *sum.Min, *sum.Max)
	}
	if p50 := sum.Quantiles["p50"]; !near(p50, 2, 0.02*2) && !near(p50, 3, 0.02*3) {
		t.Fatalf("p50 %v, want 2 or 3 within 1%%", p50)
	}
	if e := NewStats().Summary(); e.Mean != nil || e.Quantiles != nil || e.NullRate != 0 {
		t.Fatalf("empty summary %+v", e)
	}
}

// TestMergeEqualsOneStream: merging the statistics of two halves equals
// the statistics of the whole (moments to rounding, sketch exactly).
func TestMergeEqualsOneStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	whole, a, b := NewStats(), NewStats(), NewStats()
	for i := 0; i < 10000; i++ {
		v := rng.ExpFloat64() * 50
		if i%7 == 0 {
			whole.AddNull()
			a.AddNull()
			continue
		}
		whole.AddValue(v)
		if i%3 == 0 {
			a.AddValue(v)
		} else {
			b.AddValue(v)
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(NewStats()); err != nil { // merging nothing changes nothing
		t.Fatal(err)
	}
	w, m := whole.Summary(), a.Summary()
	if w.Count != m.Count || w.Nulls != m.Nulls || *w.Min != *m.Min || *w.Max != *m.Max ||
		!near(*w.Mean, *m.Mean, 1e-9) || !near(*w.Stddev, *m.Stddev, 1e-9) {
		t.Fatalf("merged %+v, whole %+v", m, w)
	}
	for q, v := range w.Quantiles {
		if m.Quantiles[q] != v {
			t.Errorf("%s: merged %v, whole %v", q, m.Quantiles[q], v)
		}
	}
	empty := NewStats()
	if err := empty.Merge(whole); err != nil || empty.Summary().Count != w.Count || *empty.Summary().Mean != *w.Mean {
		t.Fatalf("merge into empty: %v %+v", err, empty.Summary())
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := statsOf(-3, 0, 0.5, 7, 1e6)
	s.AddNull()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(&back)
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the statistics:\n%s\n%s", b, b2)
	}
	if psi, _ := PSI(s, &back); psi != 0 {
		t.Fatalf("PSI against its own round trip %v", psi)
	}
	if err := json.Unmarshal([]byte(`{"count":1,"sketch":"!!"}`), &back); err == nil {
		t.Fatal("a bad sketch was accepted")
	}
}
