package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// nearestRank is the reference quantile: the sample of rank ceil(q*n).
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantilesWithinPrecision(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  func(r *rand.Rand) time.Duration
	}{
		{"log-normal latencies around 300µs", func(r *rand.Rand) time.Duration {
			return time.Duration(300e3 * math.Exp(r.NormFloat64()))
		}},
		{"uniform over 0 to 10s", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(10 * time.Second))) }},
		{"small values are exact", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(256)) }},
		{"bimodal: fast answers and 200ms stalls", func(r *rand.Rand) time.Duration {
			if r.IntN(100) == 0 {
				return 200*time.Millisecond + time.Duration(r.IntN(1e6))
			}
			return 80*time.Microsecond + time.Duration(r.IntN(40e3))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			h := NewHistogram()
			samples := make([]time.Duration, 100_000)
			var sum float64
			for i := range samples {
				samples[i] = tc.gen(r)
				h.Record(samples[i])
				sum += float64(samples[i])
			}
			slices.Sort(samples)
			if h.Count() != uint64(len(samples)) {
				t.Fatalf("count %d, want %d", h.Count(), len(samples))
			}
			for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999} {
				got, want := h.Quantile(q), nearestRank(samples, q)
				if diff := math.Abs(float64(got - want)); diff > float64(want)/256+0.5 {
					t.Errorf("q%v: %v, exact %v (off by %.3f%%, limit 0.39%%)", q, got, want, 100*diff/float64(want))
				}
			}
			if h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
				t.Errorf("min/max %v/%v, want exactly %v/%v", h.Min(), h.Max(), samples[0], samples[len(samples)-1])
			}
			if h.Quantile(0) != h.Min() || h.Quantile(1) != h.Max() {
				t.Errorf("q0/q1 %v/%v, want min/max", h.Quantile(0), h.Quantile(1))
			}
			if mean := time.Duration(sum / float64(len(samples))); h.Mean() != mean {
				t.Errorf("mean %v, want %v", h.Mean(), mean)
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value falls in the bucket whose range holds it, and buckets are
	// contiguous and ordered: this is what makes quantiles monotone.
	prevEnd := int64(0)
	for i := 0; i < numBuckets; i++ {
		lo, w := bucketRange(i)
		if lo != prevEnd {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevEnd)
		}
		if i >= exactBelow && float64(w) > float64(lo)/subCount {
			t.Fatalf("bucket %d [%d, +%d) is wider than 1/%d of its start", i, lo, w, subCount)
		}
		for _, v := range []int64{lo, lo + w - 1, lo + w/2} {
			if got := bucketOf(v); got != i && i != numBuckets-1 {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		prevEnd = lo + w
	}
	if prevEnd != 1<<maxBits {
		t.Fatalf("buckets end at %d, want 2^%d", prevEnd, maxBits)
	}
}

func TestHistogramEdges(t *testing.T) {
	t.Run("empty histogram reports zeros", func(t *testing.T) {
		h := NewHistogram()
		if h.Count() != 0 || h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
			t.Errorf("empty: count %d q50 %v min %v max %v mean %v", h.Count(), h.Quantile(0.5), h.Min(), h.Max(), h.Mean())
		}
	})
	t.Run("values past the last bucket keep an exact max", func(t *testing.T) {
		h := NewHistogram()
		h.Record(time.Hour)
		h.Record(time.Millisecond)
		if h.Max() != time.Hour || h.Quantile(1) != time.Hour {
			t.Errorf("max %v, want 1h", h.Max())
		}
		if q := h.Quantile(0.5); q < 996*time.Microsecond || q > 1004*time.Microsecond {
			t.Errorf("median %v, want 1ms ±0.4%%", q)
		}
	})
	t.Run("negative durations count as zero", func(t *testing.T) {
		h := NewHistogram()
		h.Record(-time.Second)
		if h.Count() != 1 || h.Max() != 0 || h.Min() != 0 {
			t.Errorf("count %d min %v max %v, want 1 0 0", h.Count(), h.Min(), h.Max())
		}
	})
	t.Run("merge equals recording everything in one", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
		for i := 0; i < 10_000; i++ {
			d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
			all.Record(d)
			if i%3 == 0 {
				a.Record(d)
			} else {
				b.Record(d)
			}
		}
		a.Merge(b)
		a.Merge(NewHistogram())
		for _, q := range []float64{0, 0.5, 0.99, 1} {
			if a.Quantile(q) != all.Quantile(q) {
				t.Errorf("q%v merged %v, single %v", q, a.Quantile(q), all.Quantile(q))
			}
		}
		if a.Count() != all.Count() || a.Min() != all.Min() || a.Max() != all.Max() {
			t.Errorf("merged count/min/max %d/%v/%v, single %d/%v/%v", a.Count(), a.Min(), a.Max(), all.Count(), all.Min(), all.Max())
		}
	})
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	d := 317 * time.Microsecond
	for b.Loop() {
		h.Record(d)
		d += 13
	}
}
