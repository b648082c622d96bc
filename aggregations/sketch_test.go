package aggregations_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

var (
	distinctWindow = aggregations.Window{Hop: aggregations.Day}.For(aggregations.ApproxDistinct, 0)
	p95Window      = aggregations.Window{Hop: aggregations.Day}.For(aggregations.ApproxPercentile, 0.95)
)

// TestApproxDistinctAccuracy checks the HyperLogLog estimate over 40 seeds per
// cardinality, from a handful of values (exact up to DistinctExactMax) through
// the sparse/dense switch and the small-range regime to 100,000: the root mean
// square relative error stays within 1.3x the stated standard error
// 1.04/sqrt(4096), the mean error (bias) within a third of it, and no single
// estimate is off by more than 5 standard errors.
func TestApproxDistinctAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("accuracy over many seeds takes a few seconds")
	}
	const seeds = 40
	for _, n := range []int{1, 10, 100, aggregations.DistinctExactMax, aggregations.DistinctExactMax + 1, 300, 1000, 3000, 10_000, 20_000, 50_000, 100_000} {
		var sumSq, sum, worst float64
		for seed := range uint64(seeds) {
			rng := rand.New(rand.NewPCG(seed, uint64(n)))
			ir := aggregations.IR{}
			var s aggregations.Series
			// A mix of whole numbers, fractions and negatives, as amounts and
			// ids are; every fourth value twice.
			for i := range n {
				v := float64(rng.Int64N(1<<40)) / []float64{1, 100, -8}[i%3]
				s.Apply(distinctWindow, ev{TS: int64(i), Value: v}, aggregations.NoClock)
				if i%4 == 0 {
					s.Apply(distinctWindow, ev{TS: int64(i), Value: v}, aggregations.NoClock)
				}
			}
			ir = s.Read(distinctWindow, math.MaxInt64)
			got, ok := aggregations.Finalize(aggregations.ApproxDistinct, ir)
			if !ok {
				t.Fatalf("n=%d: null estimate", n)
			}
			rel := (got - float64(n)) / float64(n)
			sum += rel
			sumSq += rel * rel
			worst = max(worst, math.Abs(rel))
			if n <= aggregations.DistinctExactMax && got != float64(n) {
				t.Errorf("n=%d seed %d: estimate %v, want exactly %d", n, seed, got, n)
			}
			if math.Abs(rel) > 5*aggtest.DistinctStdErr {
				t.Errorf("n=%d seed %d: estimate %v is off by %.2f%%", n, seed, got, 100*rel)
			}
		}
		rms, bias := math.Sqrt(sumSq/seeds), sum/seeds
		t.Logf("n=%7d: rms error %.3f%%, bias %+.3f%%, worst %.3f%% (stated standard error %.3f%%)", n, 100*rms, 100*bias, 100*worst, 100*aggtest.DistinctStdErr)
		if rms > 1.3*aggtest.DistinctStdErr {
			t.Errorf("n=%d: rms relative error %.3f%% exceeds 1.3 x %.3f%%", n, 100*rms, 100*aggtest.DistinctStdErr)
		}
		if math.Abs(bias) > aggtest.DistinctStdErr/3 {
			t.Errorf("n=%d: mean relative error %+.3f%%: the estimator is biased", n, 100*bias)
		}
	}
}

// TestApproxDistinctRules checks what is exact about approx_distinct: small sets,
// -0 and 0 as one value, never more than the number of events, and the same
// estimate whatever the order of the values or of the merges (sparse and dense
// sketches included).
func TestApproxDistinctRules(t *testing.T) {
	estimate := func(values ...float64) float64 {
		var s aggregations.Series
		for i, v := range values {
			s.Apply(distinctWindow, ev{TS: int64(i), Value: v}, aggregations.NoClock)
		}
		got, _ := aggregations.Finalize(aggregations.ApproxDistinct, s.Read(distinctWindow, math.MaxInt64))
		return got
	}
	if got := estimate(0, math.Copysign(0, -1), 0); got != 1 {
		t.Errorf("distinct of 0, -0, 0 = %v, want 1", got)
	}
	if got := estimate(1, 2, 3, 2, 1); got != 3 {
		t.Errorf("distinct of 1,2,3,2,1 = %v, want 3", got)
	}
	if got := estimate(7, 7, 7, 7); got != 1 {
		t.Errorf("distinct of one repeated value = %v, want 1", got)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{50, 900, 1100, 5000} { // around and past the sparse/dense switch (1024 registers)
		values := make([]float64, n)
		for i := range values {
			values[i] = float64(rng.IntN(1 << 30))
		}
		want := estimate(values...)
		shuffled := slices.Clone(values)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := estimate(shuffled...); got != want {
			t.Errorf("n=%d: shuffled values estimate %v, in order %v", n, got, want)
		}
		// Split into parts (each sparse), merge in random orders.
		for range 5 {
			var merged aggregations.IR
			parts := 1 + rng.IntN(12)
			for _, p := range rng.Perm(parts) {
				var s aggregations.Series
				for i := p; i < n; i += parts {
					s.Apply(distinctWindow, ev{TS: int64(i), Value: values[i]}, aggregations.NoClock)
				}
				merged.Merge(s.Read(distinctWindow, math.MaxInt64))
			}
			if got, _ := aggregations.Finalize(aggregations.ApproxDistinct, merged); got != want {
				t.Errorf("n=%d, %d parts: merged estimate %v, single sketch %v", n, parts, got, want)
			}
		}
	}
}

// TestApproxPercentileAccuracy checks the stated guarantee over many seeds and
// distributions: the estimate is within 1% relative of the exact value of rank
// floor(p*(n-1)), for every percentile tried, and merging parts in any order
// gives the identical estimate.
func TestApproxPercentileAccuracy(t *testing.T) {
	dists := []struct {
		name string
		draw func(*rand.Rand) float64
	}{
		{"uniform amounts", func(r *rand.Rand) float64 { return float64(r.IntN(1_000_000)) / 100 }},
		{"log-normal", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64() * 3) }},
		{"signed with zeros", func(r *rand.Rand) float64 {
			if r.IntN(10) == 0 {
				return 0
			}
			return r.NormFloat64() * 1e4
		}},
		{"around 1e9", func(r *rand.Rand) float64 { return 1e9 + r.Float64() }},
		{"tiny and huge", func(r *rand.Rand) float64 { return math.Pow(10, float64(r.IntN(600)-300)) * (1 + r.Float64()) }},
	}
	checks := 0
	for _, d := range dists {
		for seed := range uint64(30) {
			rng := rand.New(rand.NewPCG(seed, 99))
			n := 1 + rng.IntN(3000)
			values := make([]float64, n)
			for i := range values {
				values[i] = d.draw(rng)
			}
			sorted := slices.Clone(values)
			slices.Sort(sorted)
			for _, p := range []float64{0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999} {
				w := aggregations.Window{Hop: aggregations.Day}.For(aggregations.ApproxPercentile, p)
				var whole aggregations.Series
				parts := make([]aggregations.Series, 1+rng.IntN(6))
				for i, v := range values {
					e := ev{TS: int64(i), Seq: int64(i), Value: v}
					whole.Apply(w, e, aggregations.NoClock)
					parts[rng.IntN(len(parts))].Apply(w, e, aggregations.NoClock)
				}
				got, ok := aggregations.Finalize(aggregations.ApproxPercentile, whole.Read(w, math.MaxInt64))
				want := sorted[int(p*float64(n-1))]
				if !ok || !aggtest.Within(aggregations.ApproxPercentile, got, want) {
					t.Fatalf("%s seed %d n=%d p=%v: estimate %v, %v; exact %v (relative error %.4f%%)", d.name, seed, n, p, got, ok, want, 100*math.Abs(got-want)/math.Abs(want))
				}
				var merged aggregations.IR
				for _, i := range rng.Perm(len(parts)) {
					merged.Merge(parts[i].Read(w, math.MaxInt64))
				}
				if m, _ := aggregations.Finalize(aggregations.ApproxPercentile, merged); m != got {
					t.Fatalf("%s seed %d p=%v: merged parts estimate %v, one sketch %v", d.name, seed, p, m, got)
				}
				checks++
			}
		}
	}
	t.Logf("%d estimates within %v relative", checks, aggtest.PercentileAlpha)
}
