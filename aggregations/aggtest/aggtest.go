// Package aggtest holds the reference implementation that the aggregations tests,
// and the tests of its callers, compare against: values computed from raw events by
// definition, without tiles, IRs or pending events.
package aggtest

import (
	"math"
	"slices"
	"strings"

	"github.com/featurepipe/featurepipe/aggregations"
)

// BruteForce computes the value of aggregation k as of T from raw events by
// definition: it keeps the events with floor(T-Size, Hop) <= ts < T (lifetime: ts <
// T) and aggregates them directly. last takes the event with the largest (ts, seq),
// then the largest value if a record appears twice; first the smallest (ts, seq),
// then the smallest value. The variances are computed in two passes (mean, then
// squared deviations). approx_distinct is the exact number of distinct values (-0
// and 0 are one value) and approx_percentile the exact value of rank
// floor(p*(n-1)) in the sorted values, p = w.Percentile() (null when w has none):
// what the sketches estimate (see Within). An empty window gives 0, true for
// count, sum and approx_distinct and 0, false (null) otherwise; variance_samp and
// stddev_samp are null below two events. w must be valid (Hop > 0).
// Cost: O(len(events) log len(events)).
func BruteForce(k aggregations.Kind, w aggregations.Window, events []aggregations.Event, T int64) (value float64, ok bool) {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	var (
		n           int64
		sum         float64
		minV, maxV  = math.Inf(1), math.Inf(-1)
		last, first aggregations.Event
		values      []float64
	)
	for _, e := range events {
		if e.TS < lo || e.TS >= T {
			continue
		}
		n++
		sum += e.Value
		minV = math.Min(minV, e.Value)
		maxV = math.Max(maxV, e.Value)
		if n == 1 || e.TS > last.TS ||
			(e.TS == last.TS && (e.Seq > last.Seq || (e.Seq == last.Seq && e.Value > last.Value))) {
			last = e
		}
		if n == 1 || e.TS < first.TS ||
			(e.TS == first.TS && (e.Seq < first.Seq || (e.Seq == first.Seq && e.Value < first.Value))) {
			first = e
		}
		values = append(values, e.Value)
	}
	switch k {
	case aggregations.Count:
		return float64(n), true
	case aggregations.Sum:
		return sum, true
	case aggregations.ApproxDistinct:
		distinct := make(map[float64]bool, len(values))
		for _, v := range values {
			distinct[v] = true // map keys: -0 == 0
		}
		return float64(len(distinct)), true
	}
	if n == 0 {
		return 0, false
	}
	mean := sum / float64(n)
	var m2 float64
	for _, v := range values {
		m2 += (v - mean) * (v - mean)
	}
	switch k {
	case aggregations.Avg:
		return mean, true
	case aggregations.Min:
		return minV, true
	case aggregations.Max:
		return maxV, true
	case aggregations.Last:
		return last.Value, true
	case aggregations.First:
		return first.Value, true
	case aggregations.Variance:
		return m2 / float64(n), true
	case aggregations.Stddev:
		return math.Sqrt(m2 / float64(n)), true
	case aggregations.VarianceSamp, aggregations.StddevSamp:
		if n < 2 {
			return 0, false
		}
		if k == aggregations.StddevSamp {
			return math.Sqrt(m2 / float64(n-1)), true
		}
		return m2 / float64(n-1), true
	case aggregations.ApproxPercentile:
		p := w.Percentile()
		if p <= 0 || p >= 1 {
			return 0, false
		}
		slices.Sort(values)
		return values[int(p*float64(n-1))], true
	}
	return 0, false
}

// PercentileAlpha is the relative accuracy of approx_percentile: the estimate is
// within PercentileAlpha*|x| of the exact value x that BruteForce returns.
const PercentileAlpha = 0.01

// DistinctStdErr is the relative standard error of approx_distinct,
// 1.04/sqrt(4096).
const DistinctStdErr = 1.04 / 64

// Within reports whether got, the value of aggregation k, matches want, the value
// BruteForce computed: Close for the exact kinds; for approx_percentile within
// PercentileAlpha relative (a guarantee, plus 1e-9 for rounding of the bucket
// bounds); for approx_distinct exactly up to aggregations.DistinctExactMax
// distinct values (a guarantee), beyond within 5 standard errors (a single
// estimate: about one in a million falls outside; accuracy over many is tested
// separately).
func Within(k aggregations.Kind, got, want float64) bool {
	switch k {
	case aggregations.ApproxPercentile:
		return math.Abs(got-want) <= (PercentileAlpha+1e-9)*math.Abs(want)
	case aggregations.ApproxDistinct:
		if want <= aggregations.DistinctExactMax {
			return got == want
		}
		return math.Abs(got-want) <= 5*DistinctStdErr*want
	}
	return Close(got, want)
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

// BruteForceList computes the value of a list aggregation (first_k, last_k)
// as of T from raw events by definition: the events of the window (as
// BruteForce takes them) sorted by (ts, seq, value), the first w.K() of them
// for first_k, or the last w.K() in reverse (newest first) for last_k. An
// empty window, a k < 1 or a kind that is not a list give nil, false (null).
// Cost: O(len(events) log len(events)).
func BruteForceList(k aggregations.Kind, w aggregations.Window, events []aggregations.Event, T int64) (values []float64, ok bool) {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	var in []aggregations.Event
	for _, e := range events {
		if e.TS >= lo && e.TS < T {
			in = append(in, e)
		}
	}
	if !k.List() || len(in) == 0 || w.K() < 1 {
		return nil, false
	}
	slices.SortFunc(in, func(a, b aggregations.Event) int {
		switch {
		case a.TS != b.TS:
			return cmpInt(a.TS, b.TS)
		case a.Seq != b.Seq:
			return cmpInt(a.Seq, b.Seq)
		case a.Value < b.Value:
			return -1
		case a.Value > b.Value:
			return 1
		}
		return 0
	})
	if k == aggregations.LastK {
		slices.Reverse(in)
	}
	in = in[:min(len(in), w.K())]
	for _, e := range in {
		values = append(values, e.Value)
	}
	return values, true
}

func cmpInt(a, b int64) int {
	if a < b {
		return -1
	}
	return 1
}

// BruteForceString computes the value of last or first over a string field
// (events' Str) as of T by definition: the events of the window (as
// BruteForce takes them) ordered by (ts, seq, value, str); last is the Str
// of the largest, first of the smallest. An empty window or another kind
// gives "", false (null). Cost: O(len(events) log len(events)).
func BruteForceString(k aggregations.Kind, w aggregations.Window, events []aggregations.Event, T int64) (value string, ok bool) {
	in := sortedStrings(w, events, T)
	if len(in) == 0 {
		return "", false
	}
	switch k {
	case aggregations.Last:
		return in[len(in)-1].Str, true
	case aggregations.First:
		return in[0].Str, true
	}
	return "", false
}

// BruteForceStringList is BruteForceList over a string field: the Str of
// the first w.K() events of the window ordered by (ts, seq, value, str) for
// first_k, of the last w.K() in reverse (newest first) for last_k.
func BruteForceStringList(k aggregations.Kind, w aggregations.Window, events []aggregations.Event, T int64) (values []string, ok bool) {
	in := sortedStrings(w, events, T)
	if !k.List() || len(in) == 0 || w.K() < 1 {
		return nil, false
	}
	if k == aggregations.LastK {
		slices.Reverse(in)
	}
	for _, e := range in[:min(len(in), w.K())] {
		values = append(values, e.Str)
	}
	return values, true
}

// sortedStrings returns the events of the window as of T sorted by (ts,
// seq, value, str).
func sortedStrings(w aggregations.Window, events []aggregations.Event, T int64) []aggregations.Event {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	var in []aggregations.Event
	for _, e := range events {
		if e.TS >= lo && e.TS < T {
			in = append(in, e)
		}
	}
	slices.SortFunc(in, func(a, b aggregations.Event) int {
		switch {
		case a.TS != b.TS:
			return cmpInt(a.TS, b.TS)
		case a.Seq != b.Seq:
			return cmpInt(a.Seq, b.Seq)
		case a.Value < b.Value:
			return -1
		case a.Value > b.Value:
			return 1
		}
		return strings.Compare(a.Str, b.Str)
	})
	return in
}
