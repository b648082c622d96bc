package aggregations_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

// The top_k tests. The property tests (property_test.go, strings_test.go)
// cover top_k windows in the exact regime against aggtest.BruteForceTopK:
// online with pending and dropped events, replay, Expire, the encoding and
// merges in every order. These cover the rules, the switch to the
// Misra-Gries summary past TopKExactMax distinct values, its error bound
// over many seeds, and the encoding of both regimes.

// topKWindow is a lifetime window of hop 1 answering top_k with k.
func topKWindow(k int) aggregations.Window {
	return aggregations.Window{Hop: 1}.For(aggregations.TopK, 0).WithK(k)
}

// foldTopK applies events to a series of w and reads it at the end of time.
func foldTopK(w aggregations.Window, events []ev) aggregations.IR {
	var s aggregations.Series
	for _, e := range events {
		s.Apply(w, e, aggregations.NoClock)
	}
	return s.Read(w, math.MaxInt64)
}

func TestTopKRules(t *testing.T) {
	vals := func(vs ...float64) []ev {
		out := make([]ev, len(vs))
		for i, v := range vs {
			out[i] = ev{TS: int64(i), Seq: int64(i), Value: v}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		k      int
		events []ev
		want   []aggregations.TopCount
	}{
		{"most frequent first", 3, vals(1, 2, 2, 3, 3, 3), []aggregations.TopCount{{3, 3}, {2, 2}, {1, 1}}},
		{"ties by value ascending", 5, vals(9, -1, 4, 9, -1, 4, 0.5), []aggregations.TopCount{{-1, 2}, {4, 2}, {9, 2}, {0.5, 1}}},
		{"k cuts the list", 2, vals(7, 7, 7, 5, 5, 6), []aggregations.TopCount{{7, 3}, {5, 2}}},
		{"-0 counts as 0", 2, vals(math.Copysign(0, -1), 0, 1), []aggregations.TopCount{{0, 2}, {1, 1}}},
		{"booleans: false before true on a tie", 2, vals(1, 0, 1, 0), []aggregations.TopCount{{0, 2}, {1, 2}}},
		{"one event", 10, vals(42), []aggregations.TopCount{{42, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := topKWindow(tc.k)
			got, ok := aggregations.FinalizeTopK(foldTopK(w, tc.events), tc.k)
			if !ok || !slices.Equal(got, tc.want) {
				t.Fatalf("top_k = %v, %v; want %v", got, ok, tc.want)
			}
			for _, c := range got {
				if c.Value == 0 && math.Signbit(c.Value) {
					t.Fatalf("top_k gave -0")
				}
			}
		})
	}
	t.Run("null: empty window, k < 1, another kind's IR, the other type's finalizer", func(t *testing.T) {
		w := topKWindow(3)
		ir := foldTopK(w, vals(1, 2))
		if v, ok := aggregations.FinalizeTopK(aggregations.IR{}, 3); ok || v != nil {
			t.Error("empty IR is not null")
		}
		if _, ok := aggregations.FinalizeTopK(ir, 0); ok {
			t.Error("k 0 is not null")
		}
		if _, ok := aggregations.FinalizeTopK(foldTopK(aggregations.Window{Hop: 1}.For(aggregations.LastK, 0).WithK(3), vals(1, 2)), 3); ok {
			t.Error("a last_k IR gives a top_k")
		}
		if _, ok := aggregations.FinalizeStringTopK(ir, 3); ok {
			t.Error("FinalizeStringTopK of a number IR is not null")
		}
		if _, ok := aggregations.Finalize(aggregations.TopK, ir); ok {
			t.Error("Finalize(TopK) is not null")
		}
		if _, ok := aggregations.FinalizeTopK(foldTopK(w.WithStrings(), []ev{{Str: "a"}}), 3); ok {
			t.Error("FinalizeTopK of a string IR is not null")
		}
	})
	t.Run("strings: counted by Str, ties in byte order", func(t *testing.T) {
		w := topKWindow(3).WithStrings()
		var events []ev
		for i, s := range []string{"fuel", "atm", "café", "atm", "fuel", "", ""} {
			events = append(events, ev{TS: int64(i), Seq: int64(i), Value: float64(i), Str: s}) // Value ignored
		}
		got, ok := aggregations.FinalizeStringTopK(foldTopK(w, events), 3)
		want := []aggregations.TopString{{"", 2}, {"atm", 2}, {"fuel", 2}}
		if !ok || !slices.Equal(got, want) {
			t.Fatalf("top_k = %+v, %v; want %+v", got, ok, want)
		}
	})
	t.Run("k is validated", func(t *testing.T) {
		for _, k := range []int{0, aggregations.MaxK + 1} {
			if err := (aggregations.Window{Size: 10, Hop: 5}).For(aggregations.TopK, 0).WithK(k).Validate(); err == nil {
				t.Errorf("k %d accepted", k)
			}
		}
		if err := (aggregations.Window{Size: 10, Hop: 5}).For(aggregations.TopK, 0).WithK(aggregations.MaxK).Validate(); err != nil {
			t.Errorf("k %d: %v", aggregations.MaxK, err)
		}
	})
}

// zipfEvents returns n events whose values follow a Zipf law over distinct
// values (many rare values, a few frequent ones), over tiles 0..tiles-1.
func zipfEvents(rng *rand.Rand, n, distinct, tiles int) []ev {
	z := rand.NewZipf(rng, 1.1, 2, uint64(distinct-1))
	out := make([]ev, n)
	for i := range out {
		out[i] = ev{TS: int64(rng.IntN(tiles)), Seq: int64(i), Value: float64(z.Uint64())}
	}
	return out
}

// topKCounts returns every counter of ir's summary as a map.
func topKCounts(t *testing.T, ir aggregations.IR) map[float64]int64 {
	t.Helper()
	all, ok := aggregations.FinalizeTopK(ir, aggregations.TopKExactMax)
	if !ok {
		t.Fatal("top_k is null")
	}
	m := make(map[float64]int64, len(all))
	for _, c := range all {
		m[c.Value] = c.Count
	}
	return m
}

// mergeShuffled merges the tiles of s in a random order.
func mergeShuffled(rng *rand.Rand, s *aggregations.Series) aggregations.IR {
	var ir aggregations.IR
	for _, i := range rng.Perm(len(s.Tiles)) {
		ir.Merge(s.Tiles[i].IR)
	}
	return ir
}

// TestTopKExactUpToExactMax: a window of exactly TopKExactMax distinct
// values, spread over tiles applied and merged in random orders, is exact
// (error 0, counts equal the brute force); one more distinct value switches
// to the summary, whose error is then positive and within the bound.
func TestTopKExactUpToExactMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, distinct := range []int{aggregations.TopKExactMax, aggregations.TopKExactMax + 1} {
		var events []ev
		for v := range distinct {
			for range 1 + rng.IntN(5) {
				events = append(events, ev{TS: int64(rng.IntN(8)), Seq: int64(len(events)), Value: float64(v)})
			}
		}
		rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		w := aggregations.Window{Size: 0, Hop: 1}.For(aggregations.TopK, 0).WithK(aggregations.TopKExactMax)
		var s aggregations.Series
		for _, e := range events {
			s.Apply(w, e, aggregations.NoClock)
		}
		typed := make([]aggtest.Typed[float64], len(events))
		for i, e := range events {
			typed[i] = aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value}
		}
		truth := aggtest.Counts(w, typed, math.MaxInt64)
		for trial := range 20 {
			ir := mergeShuffled(rng, &s)
			errBound := aggregations.TopKError(ir)
			if distinct <= aggregations.TopKExactMax {
				want, _ := aggtest.BruteForceTopK(w, typed, math.MaxInt64, aggregations.TopKExactMax)
				got, ok := aggregations.FinalizeTopK(ir, aggregations.TopKExactMax)
				if !ok || errBound != 0 || len(got) != len(want) {
					t.Fatalf("%d distinct, order %d: %d values, error %d; want %d, exact", distinct, trial, len(got), errBound, len(want))
				}
				for i := range got {
					if got[i].Value != want[i].Value || got[i].Count != want[i].Count {
						t.Fatalf("%d distinct, order %d: entry %d = %v, want %v", distinct, trial, i, got[i], want[i])
					}
				}
				continue
			}
			if errBound == 0 || errBound > int64(len(events))/(aggregations.TopKKept+1) {
				t.Fatalf("%d distinct: error %d, want 1..%d", distinct, errBound, len(events)/(aggregations.TopKKept+1))
			}
			for v, c := range topKCounts(t, ir) {
				if c > truth[v] || c < truth[v]-errBound {
					t.Fatalf("%d distinct: count of %v = %d, true %d, error %d", distinct, v, c, truth[v], errBound)
				}
			}
		}
	}
}

// TestTopKSketchAccuracy checks the Misra-Gries bound over many seeds:
// Zipf-distributed values (up to 10,000 distinct), applied to tiles in
// random order and the tiles merged in random order. For every value,
// true - error <= count <= true; error <= N/(TopKKept+1); every value more
// frequent than N/(TopKKept+1) is listed; and the most frequent value is
// first when it leads the second by more than the error.
func TestTopKSketchAccuracy(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	var worst float64 // largest error / N seen
	sketched := 0
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 77))
		n := 4000 + rng.IntN(12000)
		events := zipfEvents(rng, n, 1000+rng.IntN(9000), 1+rng.IntN(30))
		w := aggregations.Window{Size: 0, Hop: 1}.For(aggregations.TopK, 0).WithK(aggregations.TopKExactMax)
		var s aggregations.Series
		for _, e := range events {
			s.Apply(w, e, aggregations.NoClock)
		}
		ir := mergeShuffled(rng, &s)
		truth := map[float64]int64{}
		for _, e := range events {
			truth[e.Value]++
		}
		errBound := aggregations.TopKError(ir)
		bound := int64(n) / (aggregations.TopKKept + 1)
		if errBound > bound {
			t.Fatalf("seed %d: error %d beyond N/%d = %d", seed, errBound, aggregations.TopKKept+1, bound)
		}
		if len(truth) > aggregations.TopKExactMax {
			sketched++
		} else if errBound != 0 {
			t.Fatalf("seed %d: %d distinct values, error %d: not exact", seed, len(truth), errBound)
		}
		worst = max(worst, float64(errBound)/float64(n))
		counts := topKCounts(t, ir)
		for v, tc := range truth {
			c := counts[v]
			if c > tc || c < tc-errBound {
				t.Fatalf("seed %d: count of %v = %d, true %d, error %d", seed, v, c, tc, errBound)
			}
			if tc > bound && c == 0 {
				t.Fatalf("seed %d: %v occurs %d > N/%d = %d times but is not listed", seed, v, tc, aggregations.TopKKept+1, bound)
			}
		}
		byCount := make([]aggtest.Counted[float64], 0, len(truth))
		for v, c := range truth {
			byCount = append(byCount, aggtest.Counted[float64]{Value: v, Count: c})
		}
		slices.SortFunc(byCount, func(a, b aggtest.Counted[float64]) int { return int(b.Count - a.Count) })
		top, _ := aggregations.FinalizeTopK(ir, 1)
		if byCount[0].Count-byCount[1].Count > errBound && top[0].Value != byCount[0].Value {
			t.Fatalf("seed %d: top value %v, want %v (true counts %d and %d, error %d)", seed, top[0].Value, byCount[0].Value, byCount[0].Count, byCount[1].Count, errBound)
		}
	}
	t.Logf("%d of %d seeds past %d distinct values; largest error %.5f N (bound %.5f N)", sketched, seeds, aggregations.TopKExactMax, worst, 1.0/(aggregations.TopKKept+1))
	if sketched < seeds/2 {
		t.Errorf("only %d of %d seeds reached the summary", sketched, seeds)
	}
}

// TestTopKStringSketchBound: the same bound over string values, with
// merges of per-partition series.
func TestTopKStringSketchBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	w := aggregations.Window{Size: 0, Hop: 1}.For(aggregations.TopK, 0).WithK(aggregations.TopKExactMax).WithStrings()
	events := zipfEvents(rng, 40000, 8000, 12)
	parts := make([]aggregations.Series, 4)
	truth := map[string]int64{}
	for i, e := range events {
		e.Str, e.Value = fmt.Sprintf("merchant-%d", int(e.Value)), 0
		truth[e.Str]++
		parts[i%4].Apply(w, e, aggregations.NoClock)
	}
	var ir aggregations.IR
	for _, i := range rng.Perm(4) {
		ir.Merge(parts[i].Read(w, math.MaxInt64))
	}
	errBound := aggregations.TopKError(ir)
	if errBound == 0 || errBound > int64(len(events))/(aggregations.TopKKept+1) {
		t.Fatalf("error %d, want 1..%d", errBound, len(events)/(aggregations.TopKKept+1))
	}
	all, ok := aggregations.FinalizeStringTopK(ir, aggregations.TopKExactMax)
	if !ok {
		t.Fatal("null")
	}
	for i, c := range all {
		if c.Count > truth[c.Value] || c.Count < truth[c.Value]-errBound {
			t.Fatalf("count of %q = %d, true %d, error %d", c.Value, c.Count, truth[c.Value], errBound)
		}
		if i > 0 && (c.Count > all[i-1].Count || (c.Count == all[i-1].Count && c.Value <= all[i-1].Value)) {
			t.Fatalf("entries %d and %d out of order: %v %v", i-1, i, all[i-1], c)
		}
	}
	if all[0].Value != "merchant-0" || truth["merchant-0"]-truth["merchant-1"] <= errBound { // the Zipf law's most frequent value, far ahead
		t.Fatalf("top value %q (%d), merchant-0 %d, merchant-1 %d, error %d", all[0].Value, all[0].Count, truth["merchant-0"], truth["merchant-1"], errBound)
	}
}

// TestTopKMergeIsCommutativeInTheSummary: past TopKExactMax distinct values
// a.Merge(b) and b.Merge(a) still encode identically.
func TestTopKMergeIsCommutativeInTheSummary(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	w := topKWindow(10)
	for trial := range 20 {
		a := foldTopK(w, zipfEvents(rng, 3000+rng.IntN(3000), 5000, 3))
		b := foldTopK(w, zipfEvents(rng, 3000+rng.IntN(3000), 5000, 3))
		ab, ba := a.Clone(), b.Clone()
		ab.Merge(b)
		ba.Merge(a)
		if irBytes(ab) != irBytes(ba) {
			t.Fatalf("trial %d: a+b and b+a differ", trial)
		}
		if aggregations.TopKError(ab) == 0 {
			t.Fatalf("trial %d: still exact", trial)
		}
	}
}

// TestTopKEncoding round-trips top_k tiles of both regimes and number and
// string values, and checks that corrupt summaries are refused.
func TestTopKEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for name, w := range map[string]aggregations.Window{
		"numbers": topKWindow(5), "strings": topKWindow(5).WithStrings(),
	} {
		for _, distinct := range []int{3, 5000} {
			t.Run(fmt.Sprintf("%s/%d distinct", name, distinct), func(t *testing.T) {
				var s aggregations.Series
				for i, e := range zipfEvents(rng, 8000, distinct, 4) {
					if w.Strings() {
						e.Str = fmt.Sprint("v", e.Value)
					}
					e.TS = int64(i % 8)
					s.Apply(w, e, 7) // pending events too (ts 7)
				}
				b := aggregations.AppendSeries(nil, &s)
				var d aggregations.Series
				if rest, err := aggregations.DecodeSeries(b, &d); err != nil || len(rest) != 0 {
					t.Fatalf("DecodeSeries: %v, rest %d", err, len(rest))
				}
				if string(aggregations.AppendSeries(nil, &d)) != string(b) {
					t.Fatal("re-encoding differs")
				}
				if aggregations.TopKError(s.Read(w, 100)) == 0 && distinct > aggregations.TopKExactMax {
					t.Fatal("the read of the series is exact: the summary's encoding was not tested")
				}
				for _, T := range []int64{1, 3, 100} {
					if irBytes(d.Read(w, T)) != irBytes(s.Read(w, T)) {
						t.Fatalf("T=%d: the decoded series reads differently", T)
					}
				}
			})
		}
	}

	f64 := func(v float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)) }
	const count, tk, strs = 1, 1 << 17, 1 << 15
	// tile builds an extended tile at start 0 of n events with the top_k
	// section err, counters, then the counters' bytes.
	tile := func(flags uint64, n int64, tail ...[]byte) []byte {
		b := binary.AppendUvarint([]byte{0x7E}, flags)
		b = append(b, 0)
		b = binary.AppendVarint(b, n)
		if flags&strs != 0 {
			b = append(b, 0, 0) // last and first strings
		}
		for _, p := range tail {
			b = append(b, p...)
		}
		return b
	}
	u := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		src   []byte
		valid bool
	}{
		{"exact counts", tile(count|tk, 3, u(0, 2), f64(1), u(2), f64(2), u(1)), true},
		{"string counts", tile(count|tk|strs, 3, u(0, 2), u(1), []byte("a"), u(2), u(1), []byte("b"), u(1)), true},
		{"a summary within its bound", tile(count|tk, 1002, u(1, 1), f64(1), u(1)), true},
		{"exact counts that do not add up to the IR's", tile(count|tk, 4, u(0, 2), f64(1), u(2), f64(2), u(1)), false},
		{"values out of order", tile(count|tk, 3, u(0, 2), f64(2), u(2), f64(1), u(1)), false},
		{"a value twice", tile(count|tk, 3, u(0, 2), f64(1), u(2), f64(1), u(1)), false},
		{"strings out of order", tile(count|tk|strs, 3, u(0, 2), u(1), []byte("b"), u(2), u(1), []byte("a"), u(1)), false},
		{"a zero count", tile(count|tk, 3, u(0, 2), f64(1), u(3), f64(2), u(0)), false},
		{"-0", tile(count|tk, 1, u(0, 1), f64(math.Copysign(0, -1)), u(1)), false},
		{"NaN", tile(count|tk, 1, u(0, 1), f64(math.NaN()), u(1)), false},
		{"an error beyond the bound", tile(count|tk, 1002, u(2, 1), f64(1), u(1)), false},
		{"counts above the IR's with an error", tile(count|tk, 600, u(1, 1), f64(1), u(700)), false},
		{"more counters than it keeps", tile(count|tk, 2000, u(0, aggregations.TopKExactMax+1)), false},
		{"a list and top_k", tile(count|tk|1<<14, 1, u(1, 1, 0, 1), f64(0), u(0, 1), f64(0), u(1)), false},
		{"truncated", tile(count|tk, 3, u(0, 2), f64(1), u(2))[:20], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rest, err := aggregations.DecodeTile(tc.src)
			switch {
			case tc.valid && (err != nil || len(rest) != 0):
				t.Fatalf("DecodeTile(%x) = %v, rest %x", tc.src, err, rest)
			case !tc.valid && !errors.Is(err, aggregations.ErrCorrupt):
				t.Fatalf("DecodeTile error = %v, want ErrCorrupt", err)
			}
		})
	}
}
