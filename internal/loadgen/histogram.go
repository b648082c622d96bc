package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram bucket layout (log-linear, as HdrHistogram): values below
// 2^(subBits+1) ns have a bucket each; above, every power of two is split into
// 2^subBits equal buckets, so a bucket is at most 1/128 of its lower bound
// wide. Values at or above 2^maxBits ns (about 18 minutes) share the last
// bucket; Max still reports them exactly.
const (
	subBits    = 7
	subCount   = 1 << subBits
	exactBelow = 2 * subCount
	maxBits    = 40
	numBuckets = exactBelow + (maxBits-subBits-1)*subCount
)

// Histogram records durations with a relative error of at most 1/256
// (0.4%): it reports the midpoint of a bucket at most 1/128 of its value
// wide. Durations below 256ns are exact. It holds a fixed ~34 KiB of counters
// whatever the number of samples; Record is O(1) and does not allocate.
//
// The zero Histogram is not usable; call NewHistogram. A Histogram is not
// safe for concurrent use: give each goroutine its own and Merge them.
type Histogram struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets), min: math.MaxInt64}
}

// bucketOf returns the bucket index of v (ns, >= 0).
func bucketOf(v int64) int {
	if v < exactBelow {
		return int(v)
	}
	if v >= 1<<maxBits {
		return numBuckets - 1
	}
	e := bits.Len64(uint64(v)) - (subBits + 1) // >= 1: v >> e is in [subCount, 2*subCount)
	return exactBelow + (e-1)*subCount + int(v>>e) - subCount
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < exactBelow {
		return int64(i), 1
	}
	e := (i-exactBelow)/subCount + 1
	m := int64((i-exactBelow)%subCount + subCount)
	return m << e, 1 << e
}

// Record adds one duration. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded samples.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest sample, exactly; 0 when empty.
func (h *Histogram) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Max is the largest sample, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average sample; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the nearest-rank q-quantile (0 <= q <= 1): the sample of
// rank ceil(q*n) in ascending order, to within 0.4%. Quantile(0) is Min and
// Quantile(1) is Max, exactly. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	if q >= 1 {
		return h.Max()
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo, width := bucketRange(i)
		v := lo + (width-1)/2
		return time.Duration(min(max(v, h.min), h.max))
	}
	return h.Max()
}
