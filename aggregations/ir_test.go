package aggregations_test

import (
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

type ev = aggregations.Event

func irOf(events ...ev) aggregations.IR {
	var ir aggregations.IR
	for _, e := range events {
		ir.Update(e)
	}
	return ir
}

func TestFinalizeEmptyWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   aggregations.Kind
		want   float64
		wantOK bool
	}{
		{"count of an empty window is 0", aggregations.Count, 0, true},
		{"sum of an empty window is 0", aggregations.Sum, 0, true},
		{"avg of an empty window is null", aggregations.Avg, 0, false},
		{"min of an empty window is null", aggregations.Min, 0, false},
		{"max of an empty window is null", aggregations.Max, 0, false},
		{"last of an empty window is null", aggregations.Last, 0, false},
		{"an invalid kind is null", aggregations.Kind(0), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := aggregations.Finalize(tc.kind, aggregations.IR{})
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("Finalize(%v, empty) = %v, %v; want %v, %v", tc.kind, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestFinalizeRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   aggregations.Kind
		events []ev
		want   float64
	}{
		{"count ignores values", aggregations.Count, []ev{{TS: 1, Value: 5}, {TS: 2, Value: -5}, {TS: 2}}, 3},
		{"sum adds values", aggregations.Sum, []ev{{TS: 1, Value: 1.5}, {TS: 2, Value: -4}}, -2.5},
		{"sum of values that cancel is 0, not null", aggregations.Sum, []ev{{TS: 1, Value: 3}, {TS: 2, Value: -3}}, 0},
		{"avg is sum over count", aggregations.Avg, []ev{{TS: 1, Value: 1}, {TS: 2, Value: 2}, {TS: 3, Value: 6}}, 3},
		{"min takes the smallest, negatives included", aggregations.Min, []ev{{TS: 1, Value: 2}, {TS: 2, Value: -7}, {TS: 3, Value: 0}}, -7},
		{"max takes the largest, all negative", aggregations.Max, []ev{{TS: 1, Value: -2}, {TS: 2, Value: -7}}, -2},
		{"last is by event time, not arrival order", aggregations.Last, []ev{{TS: 9, Seq: 1, Value: 90}, {TS: 3, Seq: 2, Value: 30}}, 90},
		{"tie on ts: larger seq wins for last", aggregations.Last, []ev{{TS: 5, Seq: 8, Value: 1}, {TS: 5, Seq: 3, Value: 2}}, 1},
		{"tie on ts: larger seq wins for last, whatever the arrival order", aggregations.Last, []ev{{TS: 5, Seq: 3, Value: 2}, {TS: 5, Seq: 8, Value: 1}}, 1},
		{"last of a single event is its value", aggregations.Last, []ev{{TS: -4, Seq: 0, Value: 0.25}}, 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := aggregations.Finalize(tc.kind, irOf(tc.events...))
			if !ok || got != tc.want {
				t.Fatalf("Finalize = %v, %v; want %v, true", got, ok, tc.want)
			}
			// Splitting the events over two IRs and merging gives the same value.
			for cut := 0; cut <= len(tc.events); cut++ {
				a, b := irOf(tc.events[:cut]...), irOf(tc.events[cut:]...)
				a.Merge(b)
				if got, ok := aggregations.Finalize(tc.kind, a); !ok || got != tc.want {
					t.Errorf("merged at %d: Finalize = %v, %v; want %v", cut, got, ok, tc.want)
				}
			}
		})
	}
}

func TestFinalizeInvalidKindIsNull(t *testing.T) {
	if v, ok := aggregations.Finalize(aggregations.Kind(42), irOf(ev{TS: 1, Value: 3})); ok {
		t.Fatalf("Finalize(invalid kind) = %v, true; want null", v)
	}
}

func TestMergeEmpty(t *testing.T) {
	x := irOf(ev{TS: 3, Seq: 1, Value: -2}, ev{TS: 1, Seq: 2, Value: 4})
	a := x
	a.Merge(aggregations.IR{})
	if a != x {
		t.Errorf("merging an empty IR changed %+v to %+v", x, a)
	}
	var b aggregations.IR
	b.Merge(x)
	if b != x {
		t.Errorf("merging into an empty IR gave %+v, want %+v", b, x)
	}
	if !(aggregations.IR{}).Empty() || x.Empty() {
		t.Error("Empty() must be true only for Count == 0")
	}
}
