package aggtest_test

import (
	"math"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

func TestClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want float64
		close     bool
	}{
		{"equal values match", 1.5, 1.5, true},
		{"counts must match exactly", 1e10 + 1, 1e10, false},
		{"whole numbers off by one do not match", 3, 4, false},
		{"relative error below 1e-9 matches", 1e6 * (1 + 1e-12), 1e6, true},
		{"relative error above 1e-9 does not match", 1.000001, 1, false},
		{"absolute error below 1e-9 matches near zero", 1e-12, 0, true},
		{"absolute error above 1e-9 does not match near zero", 1e-6, 0, false},
		{"sign matters", -2.5, 2.5, false},
		{"NaN matches NaN", math.NaN(), math.NaN(), true},
		{"NaN does not match a number", math.NaN(), 0, false},
		{"infinity matches itself", math.Inf(1), math.Inf(1), true},
		{"infinities of opposite signs do not match", math.Inf(1), math.Inf(-1), false},
		{"huge whole numbers compare relatively", 1e17, 1e17 + 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aggtest.Close(tc.got, tc.want); got != tc.close {
				t.Fatalf("Close(%v, %v) = %v, want %v", tc.got, tc.want, got, tc.close)
			}
		})
	}
}

func TestBruteForce(t *testing.T) {
	w := aggregations.Window{Size: 20, Hop: 10}
	events := []aggregations.Event{
		{TS: -11, Seq: 1, Value: 100}, // before every window below
		{TS: -10, Seq: 2, Value: 1},
		{TS: 5, Seq: 3, Value: 2},
		{TS: 9, Seq: 5, Value: 4},
		{TS: 9, Seq: 4, Value: 8},
		{TS: 10, Seq: 6, Value: 16},
	}
	for _, tc := range []struct {
		name   string
		kind   aggregations.Kind
		w      aggregations.Window
		T      int64
		want   float64
		wantOK bool
	}{
		{"window start is floored to the hop, negative times included", aggregations.Count, w, 10, 4, true},
		{"event at T is excluded", aggregations.Sum, w, 10, 15, true},
		{"window moves by whole hops", aggregations.Sum, w, 21, 30, true},
		{"tie on ts: larger seq wins for last", aggregations.Last, w, 10, 4, true},
		{"min", aggregations.Min, w, 10, 1, true},
		{"max", aggregations.Max, w, 10, 8, true},
		{"avg", aggregations.Avg, w, 10, 15.0 / 4, true},
		{"lifetime takes everything before T", aggregations.Sum, aggregations.Window{Hop: 10}, 10, 115, true},
		{"empty window: count is 0", aggregations.Count, w, -11, 0, true},
		{"empty window: sum is 0", aggregations.Sum, w, -11, 0, true},
		{"empty window: avg is null", aggregations.Avg, w, -11, 0, false},
		{"empty window: last is null", aggregations.Last, w, 1000, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := aggtest.BruteForce(tc.kind, tc.w, events, tc.T)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("BruteForce(%v, T=%d) = %v, %v; want %v, %v", tc.kind, tc.T, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
