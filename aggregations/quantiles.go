package aggregations

import (
	"math"
	"slices"
)

// Quantile sketch for ApproxPercentile: DDSketch (Masson, Rim, Lee, "DDSketch:
// a fast and fully-mergeable quantile sketch with relative-error guarantees",
// VLDB 2019) with the exact logarithmic mapping and unbounded sparse stores.
//
// A positive value x goes to bucket key ceil(log_gamma(x)) with gamma =
// (1+alpha)/(1-alpha), a negative one to the same key in a second store, and 0
// to a zero count; a bucket keeps only its count, and reports the value
// 2*gamma^key/(gamma+1), within a relative alpha of every value in it.
//
// Guarantee (deterministic, not probabilistic): for n values and percentile p,
// the sketch returns a value within a relative quantileAlpha = 1% of the value
// of rank floor(p*(n-1)) (0-based) in the sorted values. Merging adds bucket
// counts, so it is exact, commutative and associative: the same values give
// the same buckets and the same answer however tiles were merged.
//
// Why not a library (DataDog/sketches-go): the package is standard-library
// only, and the IR needs a compact, canonical per-tile encoding that we
// version; sketches-go's dense stores hold a float64 per bucket of the key
// range (KiBs per tile) and its encodings are its own. Collapsing stores are
// not used: with no bucket limit nothing depends on merge order. The number of
// buckets is bounded by the spread of the values: about
// log(max/min)/log(gamma) = 115 per decade at 1%.
const quantileAlpha = 0.01

var (
	quantileGamma   = (1 + quantileAlpha) / (1 - quantileAlpha)
	quantileInvLogG = 1 / math.Log(quantileGamma)
	// quantileMid maps gamma^key to the middle of the bucket (relative error
	// at most alpha to both ends).
	quantileMid = 2 / (1 + quantileGamma)
)

// bucket is one key of a quantile sketch store and its count (> 0).
type bucket struct {
	key int32
	n   uint64
}

// quantiles is a DDSketch answering the quantile q.
type quantiles struct {
	q        float64  // the quantile Finalize reads, 0 < q < 1
	zero     uint64   // count of zeros (and -0)
	pos, neg []bucket // sorted by key ascending; neg holds keys of -x
}

// quantileKey is the bucket key of a positive value.
func quantileKey(x float64) int32 {
	return int32(math.Ceil(math.Log(x) * quantileInvLogG))
}

// quantileValue is the value a bucket reports, within alpha of its values,
// clamped to the finite float64 range.
func quantileValue(key int32) float64 {
	v := math.Exp(float64(key)/quantileInvLogG) * quantileMid
	return math.Min(v, math.MaxFloat64)
}

// add folds the value v into the sketch.
func (s *quantiles) add(v float64) {
	switch {
	case v > 0:
		s.pos = addBucket(s.pos, quantileKey(v), 1)
	case v < 0:
		s.neg = addBucket(s.neg, quantileKey(-v), 1)
	default:
		s.zero++
	}
}

// addBucket adds n to key in the sorted store b.
func addBucket(b []bucket, key int32, n uint64) []bucket {
	i, found := slices.BinarySearchFunc(b, key, func(e bucket, k int32) int {
		switch {
		case e.key < k:
			return -1
		case e.key > k:
			return 1
		}
		return 0
	})
	if found {
		b[i].n += n
		return b
	}
	return slices.Insert(b, i, bucket{key, n})
}

// merge adds o's counts to s. s keeps its own q.
func (s *quantiles) merge(o *quantiles) {
	s.zero += o.zero
	s.pos = mergeBuckets(s.pos, o.pos)
	s.neg = mergeBuckets(s.neg, o.neg)
}

// mergeBuckets returns the sum of two sorted stores, reusing a's storage
// when it has room (merging from the back, so no element is overwritten
// before it is read).
func mergeBuckets(a, b []bucket) []bucket {
	n := len(a)
	for i, j := 0, 0; j < len(b); {
		switch {
		case i < len(a) && a[i].key < b[j].key:
			i++
		case i < len(a) && a[i].key == b[j].key:
			i, j = i+1, j+1
		default:
			n, j = n+1, j+1
		}
	}
	out := a
	if cap(a) < n {
		out = make([]bucket, n, max(n, 2*len(a))) // amortized: a read merges many tiles
		copy(out, a)
	} else {
		out = a[:n]
	}
	i, j := len(a)-1, len(b)-1
	for k := n - 1; j >= 0; k-- {
		switch {
		case i >= 0 && out[i].key > b[j].key:
			out[k], i = out[i], i-1
		case i >= 0 && out[i].key == b[j].key:
			out[k] = bucket{b[j].key, out[i].n + b[j].n}
			i, j = i-1, j-1
		default:
			out[k], j = b[j], j-1
		}
	}
	return out
}

// clone returns a deep copy of s.
func (s *quantiles) clone() *quantiles {
	return &quantiles{q: s.q, zero: s.zero, pos: slices.Clone(s.pos), neg: slices.Clone(s.neg)}
}

// total is the number of values folded in.
func (s *quantiles) total() uint64 {
	n := s.zero
	for _, b := range s.pos {
		n += b.n
	}
	for _, b := range s.neg {
		n += b.n
	}
	return n
}

// quantile returns the estimate of the value of rank floor(q*(n-1)) (0-based,
// ascending), or ok=false when the sketch is empty.
func (s *quantiles) quantile(q float64) (float64, bool) {
	n := s.total()
	if n == 0 {
		return 0, false
	}
	rank := q * float64(n-1)
	var cum uint64
	for i := len(s.neg) - 1; i >= 0; i-- { // most negative first
		cum += s.neg[i].n
		if float64(cum) > rank {
			return -quantileValue(s.neg[i].key), true
		}
	}
	cum += s.zero
	if float64(cum) > rank {
		return 0, true
	}
	for _, b := range s.pos {
		cum += b.n
		if float64(cum) > rank {
			return quantileValue(b.key), true
		}
	}
	// Unreachable: cum == n > rank. Return the largest value.
	if len(s.pos) > 0 {
		return quantileValue(s.pos[len(s.pos)-1].key), true
	}
	return 0, true
}
