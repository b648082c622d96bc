package aggtest

import (
	"cmp"
	"math"
	"slices"

	"github.com/featurepipe/featurepipe/aggregations"
)

// Typed is an event whose value keeps the Go type of its field (a string,
// bool or int64; a float64 for a double), before any decoding to the
// float64 an IR takes: what the brute force of a feature over a string,
// boolean or long field compares against.
type Typed[V comparable] struct {
	TS    int64 // event time, epoch ms
	Seq   int64 // tie-breaker on TS, as aggregations.Event.Seq
	Value V
}

// BruteForceDistinct is approx_distinct as of T by definition: the number
// of distinct values (Go equality: distinct strings, booleans or longs) of
// the events in the window (taken as BruteForce takes them). An empty
// window gives 0. Compare with Within(aggregations.ApproxDistinct, ...).
// Cost: O(len(events)).
func BruteForceDistinct[V comparable](w aggregations.Window, events []Typed[V], T int64) float64 {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	distinct := map[V]bool{}
	for _, e := range events {
		if e.TS >= lo && e.TS < T {
			distinct[e.Value] = true
		}
	}
	return float64(len(distinct))
}

// BruteForceTopK is top_k as of T by definition: the count of every
// distinct value (Go equality: distinct strings, booleans, longs or
// doubles; give doubles with -0 as 0) among the events in the window
// (taken as BruteForce takes them), sorted by count descending, then by
// value ascending (cmp.Compare), the first k of them. An empty window or
// k < 1 gives nil, false (null). Cost: O(len(events) log len(events)).
func BruteForceTopK[V cmp.Ordered](w aggregations.Window, events []Typed[V], T int64, k int) (top []Counted[V], ok bool) {
	counts := Counts(w, events, T)
	if len(counts) == 0 || k < 1 {
		return nil, false
	}
	for v, n := range counts {
		top = append(top, Counted[V]{Value: v, Count: n})
	}
	slices.SortFunc(top, func(a, b Counted[V]) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
	return top[:min(k, len(top))], true
}

// Counted is a value and its number of occurrences: an entry of top_k.
type Counted[V any] struct {
	Value V
	Count int64
}

// Counts is the exact number of occurrences of every value of the events
// in the window as of T (taken as BruteForce takes them): what the counts
// of a top_k summary past aggregations.TopKExactMax distinct values are
// compared with.
func Counts[V comparable](w aggregations.Window, events []Typed[V], T int64) map[V]int64 {
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	counts := map[V]int64{}
	for _, e := range events {
		if e.TS >= lo && e.TS < T {
			counts[e.Value]++
		}
	}
	return counts
}
