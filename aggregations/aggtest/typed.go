package aggtest

import (
	"math"

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
