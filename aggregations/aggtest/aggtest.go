// Package aggtest holds the reference implementation that the aggregations tests,
// and the tests of its callers, compare against: values computed from raw events by
// definition, without tiles, IRs or pending events.
package aggtest

import (
	"math"

	"github.com/featurepipe/featurepipe/aggregations"
)

// BruteForce computes the value of aggregation k as of T from raw events by
// definition: it keeps the events with floor(T-Size, Hop) <= ts < T (lifetime: ts <
// T) and aggregates them directly. last takes the event with the largest (ts, seq),
// then the largest value if a record appears twice. An empty window gives 0, true for
// count and sum and 0, false (null) otherwise. w must be valid (Hop > 0).
// Cost: O(len(events)).
func BruteForce(k aggregations.Kind, w aggregations.Window, events []aggregations.Event, T int64) (value float64, ok bool) {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	var (
		n          int64
		sum        float64
		minV, maxV = math.Inf(1), math.Inf(-1)
		last       aggregations.Event
		haveLast   bool
	)
	for _, e := range events {
		if e.TS < lo || e.TS >= T {
			continue
		}
		n++
		sum += e.Value
		minV = math.Min(minV, e.Value)
		maxV = math.Max(maxV, e.Value)
		if !haveLast || e.TS > last.TS ||
			(e.TS == last.TS && (e.Seq > last.Seq || (e.Seq == last.Seq && e.Value > last.Value))) {
			last, haveLast = e, true
		}
	}
	switch k {
	case aggregations.Count:
		return float64(n), true
	case aggregations.Sum:
		return sum, true
	}
	if n == 0 {
		return 0, false
	}
	switch k {
	case aggregations.Avg:
		return sum / float64(n), true
	case aggregations.Min:
		return minV, true
	case aggregations.Max:
		return maxV, true
	case aggregations.Last:
		return last.Value, true
	}
	return 0, false
}

// floor rounds t down to a multiple of step, also for negative t. It is written
// independently of the package's own arithmetic on purpose.
func floor(t, step int64) int64 {
	q := t / step
	if q*step > t {
		q--
	}
	return q * step
}

// exactBelow bounds the magnitudes Close compares exactly when both values are
// whole numbers: counts, and sums of whole values, are exact in float64 there.
const exactBelow = 1 << 40

// Close reports whether got matches want: exactly when both are whole numbers
// below 2^40 in magnitude (counts), otherwise within a relative 1e-9, or an absolute
// 1e-9 near zero. NaN matches NaN; infinities match only themselves.
func Close(got, want float64) bool {
	switch {
	case math.IsNaN(got) || math.IsNaN(want):
		return math.IsNaN(got) && math.IsNaN(want)
	case math.IsInf(got, 0) || math.IsInf(want, 0):
		return got == want
	case got == want:
		return true
	case whole(got) && whole(want) && math.Abs(got) < exactBelow && math.Abs(want) < exactBelow:
		return false
	}
	diff := math.Abs(got - want)
	return diff <= 1e-9 || diff <= 1e-9*math.Max(math.Abs(got), math.Abs(want))
}

func whole(v float64) bool { return v == math.Trunc(v) }
