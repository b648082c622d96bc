package aggregations_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

type ev = aggregations.Event

func irOf(events ...ev) aggregations.IR {
	var ir aggregations.IR
	for _, e := range events {
		ir.Update(e)
	}
	return ir
}

func TestFinalizeEmptyWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   aggregations.Kind
		want   float64
		wantOK bool
	}{
		{"count of an empty window is 0", aggregations.Count, 0, true},
		{"sum of an empty window is 0", aggregations.Sum, 0, true},
		{"avg of an empty window is null", aggregations.Avg, 0, false},
		{"min of an empty window is null", aggregations.Min, 0, false},
		{"max of an empty window is null", aggregations.Max, 0, false},
		{"last of an empty window is null", aggregations.Last, 0, false},
		{"first of an empty window is null", aggregations.First, 0, false},
		{"variance of an empty window is null", aggregations.Variance, 0, false},
		{"stddev of an empty window is null", aggregations.Stddev, 0, false},
		{"variance_samp of an empty window is null", aggregations.VarianceSamp, 0, false},
		{"stddev_samp of an empty window is null", aggregations.StddevSamp, 0, false},
		{"approx_distinct of an empty window is 0", aggregations.ApproxDistinct, 0, true},
		{"approx_percentile of an empty window is null", aggregations.ApproxPercentile, 0, false},
		{"an invalid kind is null", aggregations.Kind(0), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := aggregations.Finalize(tc.kind, aggregations.IR{})
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("Finalize(%v, empty) = %v, %v; want %v, %v", tc.kind, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestFinalizeRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   aggregations.Kind
		events []ev
		want   float64
	}{
		{"count ignores values", aggregations.Count, []ev{{TS: 1, Value: 5}, {TS: 2, Value: -5}, {TS: 2}}, 3},
		{"sum adds values", aggregations.Sum, []ev{{TS: 1, Value: 1.5}, {TS: 2, Value: -4}}, -2.5},
		{"sum of values that cancel is 0, not null", aggregations.Sum, []ev{{TS: 1, Value: 3}, {TS: 2, Value: -3}}, 0},
		{"avg is sum over count", aggregations.Avg, []ev{{TS: 1, Value: 1}, {TS: 2, Value: 2}, {TS: 3, Value: 6}}, 3},
		{"min takes the smallest, negatives included", aggregations.Min, []ev{{TS: 1, Value: 2}, {TS: 2, Value: -7}, {TS: 3, Value: 0}}, -7},
		{"max takes the largest, all negative", aggregations.Max, []ev{{TS: 1, Value: -2}, {TS: 2, Value: -7}}, -2},
		{"last is by event time, not arrival order", aggregations.Last, []ev{{TS: 9, Seq: 1, Value: 90}, {TS: 3, Seq: 2, Value: 30}}, 90},
		{"tie on ts: larger seq wins for last", aggregations.Last, []ev{{TS: 5, Seq: 8, Value: 1}, {TS: 5, Seq: 3, Value: 2}}, 1},
		{"tie on ts: larger seq wins for last, whatever the arrival order", aggregations.Last, []ev{{TS: 5, Seq: 3, Value: 2}, {TS: 5, Seq: 8, Value: 1}}, 1},
		{"last of a single event is its value", aggregations.Last, []ev{{TS: -4, Seq: 0, Value: 0.25}}, 0.25},
		{"first is by event time, not arrival order", aggregations.First, []ev{{TS: 9, Seq: 1, Value: 90}, {TS: 3, Seq: 2, Value: 30}}, 30},
		{"tie on ts: smaller seq (earlier offset) wins for first", aggregations.First, []ev{{TS: 5, Seq: 8, Value: 1}, {TS: 5, Seq: 3, Value: 2}}, 2},
		{"tie on ts: smaller seq wins for first, whatever the arrival order", aggregations.First, []ev{{TS: 5, Seq: 3, Value: 2}, {TS: 5, Seq: 8, Value: 1}}, 2},
		{"population variance divides by n", aggregations.Variance, []ev{{TS: 1, Value: 2}, {TS: 2, Value: 4}, {TS: 3, Value: 4}, {TS: 4, Value: 4}, {TS: 5, Value: 5}, {TS: 6, Value: 5}, {TS: 7, Value: 7}, {TS: 8, Value: 9}}, 4},
		{"population stddev is its square root", aggregations.Stddev, []ev{{TS: 1, Value: 2}, {TS: 2, Value: 4}, {TS: 3, Value: 4}, {TS: 4, Value: 4}, {TS: 5, Value: 5}, {TS: 6, Value: 5}, {TS: 7, Value: 7}, {TS: 8, Value: 9}}, 2},
		{"sample variance divides by n-1", aggregations.VarianceSamp, []ev{{TS: 1, Value: 1}, {TS: 2, Value: 2}, {TS: 3, Value: 3}, {TS: 4, Value: 4}}, 5.0 / 3},
		{"sample stddev of two events", aggregations.StddevSamp, []ev{{TS: 1, Value: 1}, {TS: 2, Value: 3}}, math.Sqrt2},
		{"variance of one event is 0", aggregations.Variance, []ev{{TS: 1, Value: 1e9}}, 0},
		{"variance of equal values is exactly 0", aggregations.Variance, []ev{{TS: 1, Value: 0.1}, {TS: 2, Value: 0.1}, {TS: 3, Value: 0.1}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := aggregations.Finalize(tc.kind, irOf(tc.events...))
			if !ok || got != tc.want {
				t.Fatalf("Finalize = %v, %v; want %v, true", got, ok, tc.want)
			}
			// Splitting the events over two IRs and merging gives the same value.
			for cut := 0; cut <= len(tc.events); cut++ {
				a, b := irOf(tc.events[:cut]...), irOf(tc.events[cut:]...)
				a.Merge(b)
				if got, ok := aggregations.Finalize(tc.kind, a); !ok || !aggtest.Close(got, tc.want) {
					t.Errorf("merged at %d: Finalize = %v, %v; want %v", cut, got, ok, tc.want)
				}
			}
		})
	}
}

func TestFinalizeInvalidKindIsNull(t *testing.T) {
	if v, ok := aggregations.Finalize(aggregations.Kind(42), irOf(ev{TS: 1, Value: 3})); ok {
		t.Fatalf("Finalize(invalid kind) = %v, true; want null", v)
	}
}

func TestMergeEmpty(t *testing.T) {
	x := irOf(ev{TS: 3, Seq: 1, Value: -2}, ev{TS: 1, Seq: 2, Value: 4})
	a := x
	a.Merge(aggregations.IR{})
	if a != x {
		t.Errorf("merging an empty IR changed %+v to %+v", x, a)
	}
	var b aggregations.IR
	b.Merge(x)
	if b != x {
		t.Errorf("merging into an empty IR gave %+v, want %+v", b, x)
	}
	if !(aggregations.IR{}).Empty() || x.Empty() {
		t.Error("Empty() must be true only for Count == 0")
	}
}

func TestFinalizeSampleKindsNeedTwoEvents(t *testing.T) {
	one := irOf(ev{TS: 1, Value: 3})
	for _, k := range []aggregations.Kind{aggregations.VarianceSamp, aggregations.StddevSamp} {
		if v, ok := aggregations.Finalize(k, one); ok {
			t.Errorf("%v of one event = %v, want null", k, v)
		}
	}
	for _, k := range []aggregations.Kind{aggregations.Variance, aggregations.Stddev} {
		if v, ok := aggregations.Finalize(k, one); !ok || v != 0 {
			t.Errorf("%v of one event = %v, %v; want 0", k, v, ok)
		}
	}
}

// TestVarianceIsStableOnLargeValues checks the variances on values like 1e9+eps,
// where the textbook sum-of-squares formula (E[x^2] - E[x]^2) loses every digit,
// updated one by one and merged from parts in several orders.
func TestVarianceIsStableOnLargeValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	// The error that remains is about ulp(mean)/spread relative: 1e-7 at 1e9
	// with a spread of 0.3 (at 1e12 the values themselves are only exact to 1e-4).
	for _, base := range []float64{1e9, -3e9} {
		events := make([]ev, 1000)
		devs := make([]float64, len(events))
		for i := range events {
			devs[i] = float64(rng.IntN(1000)) / 1000 // eps in [0, 1)
			events[i] = ev{TS: int64(i), Seq: int64(i), Value: base + devs[i]}
		}
		// The shifted values are not exactly base+dev in float64: compare against
		// the deviations actually stored.
		var m2 float64
		var meanStored float64
		for _, e := range events {
			meanStored += e.Value - base
		}
		meanStored /= float64(len(events))
		for _, e := range events {
			d := e.Value - base - meanStored
			m2 += d * d
		}
		want := m2 / float64(len(events))

		var naiveSum, naiveSq float64
		for _, e := range events {
			naiveSum += e.Value
			naiveSq += e.Value * e.Value
		}
		naive := naiveSq/float64(len(events)) - (naiveSum/float64(len(events)))*(naiveSum/float64(len(events)))
		if math.Abs(naive-want) < 0.01*want {
			t.Fatalf("base %g: the naive formula is accurate here (%v vs %v); the test needs harder values", base, naive, want)
		}

		check := func(what string, ir aggregations.IR) {
			t.Helper()
			got, ok := aggregations.Finalize(aggregations.Variance, ir)
			if !ok || math.Abs(got-want) > 1e-6*want {
				t.Errorf("base %g, %s: variance = %v, want %v (naive formula: %v)", base, what, got, want, naive)
			}
			samp, _ := aggregations.Finalize(aggregations.StddevSamp, ir)
			if wantS := math.Sqrt(m2 / float64(len(events)-1)); math.Abs(samp-wantS) > 1e-6*wantS {
				t.Errorf("base %g, %s: stddev_samp = %v, want %v", base, what, samp, wantS)
			}
		}
		check("updated one by one", irOf(events...))
		for _, parts := range []int{2, 7, 100} {
			var merged aggregations.IR
			for _, p := range rng.Perm(parts) {
				lo, hi := p*len(events)/parts, (p+1)*len(events)/parts
				merged.Merge(irOf(events[lo:hi]...))
			}
			check("merged from parts", merged)
		}
	}
}

// TestMergeIntoEmptyCopiesTheSketch checks that an IR merged into an empty one
// does not share its sketch: updating either leaves the other as it was.
func TestMergeIntoEmptyCopiesTheSketch(t *testing.T) {
	for _, w := range []aggregations.Window{
		aggregations.Window{Hop: 10}.For(aggregations.ApproxDistinct, 0),
		aggregations.Window{Hop: 10}.For(aggregations.ApproxPercentile, 0.5),
	} {
		src := foldIR(w, ev{TS: 1, Value: 1}, ev{TS: 2, Value: 2})
		before := irBytes(src)
		var dst aggregations.IR
		dst.Merge(src)
		if irBytes(dst) != before {
			t.Fatalf("merge into empty: %+v, want a copy of %+v", dst, src)
		}
		for i := range 50 {
			dst.Update(ev{TS: 3, Value: float64(100 + i)})
		}
		if irBytes(src) != before {
			t.Errorf("updating the merged IR changed the one merged from")
		}
		if d, _ := aggregations.Finalize(aggregations.ApproxDistinct, dst); w.Percentile() == 0 && d < 40 {
			t.Errorf("approx_distinct after 50 new values = %v: the sketch was not updated", d)
		}
		c := src.Clone()
		c.Update(ev{TS: 4, Value: -7})
		if irBytes(src) != before {
			t.Errorf("updating a Clone changed the original")
		}
	}
}

// TestExactKindsDoNotAllocate checks that IRs of the exact kinds cost no sketch:
// Update, Merge and Series.Apply into an existing tile do not allocate.
func TestExactKindsDoNotAllocate(t *testing.T) {
	w := aggregations.Window{Size: aggregations.Day, Hop: aggregations.Hour}.For(aggregations.Variance, 0)
	var s aggregations.Series
	s.Apply(w, ev{TS: 10, Value: 1}, 100)
	a, b := irOf(ev{TS: 1, Value: 1}), irOf(ev{TS: 2, Value: 2})
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		i++
		s.Apply(w, ev{TS: 20, Seq: int64(i), Value: float64(i)}, 100)
		a.Update(ev{TS: 3, Value: 4})
		a.Merge(b)
		_ = s.Read(w, 100)
	}); n != 0 {
		t.Errorf("exact kinds allocate %v times per event", n)
	}
}

// TestListKinds pins first_k and last_k on a hand-checked example: event-time
// order (not arrival), ties on ts by Seq (first_k: smaller first, last_k:
// larger first), at most k values, null when empty, and nothing from Finalize
// or from a window without the list.
func TestListKinds(t *testing.T) {
	events := []ev{{TS: 5, Seq: 2, Value: 50}, {TS: 1, Seq: 9, Value: 10}, {TS: 5, Seq: 1, Value: 51}, {TS: 3, Seq: 4, Value: 30}, {TS: 9, Seq: 3, Value: 90}}
	for _, tc := range []struct {
		kind aggregations.Kind
		k    int
		want []float64
	}{
		{aggregations.FirstK, 3, []float64{10, 30, 51}},
		{aggregations.LastK, 3, []float64{90, 50, 51}},
		{aggregations.FirstK, 1, []float64{10}},
		{aggregations.LastK, 10, []float64{90, 50, 51, 30, 10}},
	} {
		w := aggregations.Window{Size: 0, Hop: 2}.For(tc.kind, 0).WithK(tc.k)
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		var s aggregations.Series
		if got, ok := aggregations.FinalizeList(tc.kind, s.Read(w, 100)); ok || got != nil {
			t.Errorf("%v of an empty window = %v, %v; want null", tc.kind, got, ok)
		}
		for _, e := range events {
			s.Apply(w, e, aggregations.NoClock)
		}
		ir := s.Read(w, 100)
		if got, ok := aggregations.FinalizeList(tc.kind, ir); !ok || !slices.Equal(got, tc.want) {
			t.Errorf("%v k=%d = %v, %v; want %v", tc.kind, tc.k, got, ok, tc.want)
		}
		if _, ok := aggregations.Finalize(tc.kind, ir); ok {
			t.Errorf("Finalize(%v) is not null", tc.kind)
		}
		other := aggregations.LastK
		if tc.kind == aggregations.LastK {
			other = aggregations.FirstK
		}
		if _, ok := aggregations.FinalizeList(other, ir); ok {
			t.Errorf("FinalizeList(%v) of a %v IR is not null", other, tc.kind)
		}
		if _, ok := aggregations.FinalizeList(aggregations.Last, ir); ok {
			t.Error("FinalizeList(last) is not null")
		}
	}
	for _, k := range []int{0, -1, aggregations.MaxK + 1} {
		if err := (aggregations.Window{Hop: 1}).For(aggregations.LastK, 0).WithK(k).Validate(); err == nil {
			t.Errorf("k=%d validates", k)
		}
	}
	if w := (aggregations.Window{Hop: 1}).WithK(5); w.K() != 0 {
		t.Errorf("WithK on a window without a list set k=%d", w.K())
	}
}

// TestListWithInvalidKDoesNotPanic: a list window without WithK (invalid,
// Validate says so) still folds events, as a list of one.
func TestListWithInvalidKDoesNotPanic(t *testing.T) {
	w := aggregations.Window{Hop: 1}.For(aggregations.LastK, 0)
	var s aggregations.Series
	for i := range 5 {
		s.Apply(w, ev{TS: int64(i), Seq: int64(i), Value: float64(i)}, aggregations.NoClock)
	}
	if got, ok := aggregations.FinalizeList(aggregations.LastK, s.Read(w, 100)); !ok || !slices.Equal(got, []float64{4}) {
		t.Errorf("last_k without k = %v, %v; want [4] (k clamped to 1)", got, ok)
	}
}
