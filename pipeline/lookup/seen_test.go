package lookup

import (
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
)

func marker(ts int64) aggregations.Tile {
	var ir aggregations.IR
	ir.Update(aggregations.Event{TS: ts})
	return aggregations.Tile{Start: aggregations.BaseStart, IR: ir}
}

// TestSetSeenKeepsTheEarliest: a later marker (a worker that rebuilt its
// state from a shorter history) never makes a known entity unknown again.
func TestSetSeenKeepsTheEarliest(t *testing.T) {
	var s aggregations.Series
	for _, c := range []struct{ ts, want int64 }{{500, 500}, {900, 500}, {200, 200}, {300, 200}} {
		setSeen(&s, marker(c.ts))
		if s.Base.LastTS != c.want {
			t.Fatalf("after a marker at %d: %d, want %d", c.ts, s.Base.LastTS, c.want)
		}
	}
}

// TestKnownAt: known iff a marker of any source is before T; a view
// without markers (written before them) is known when it has a series.
func TestKnownAt(t *testing.T) {
	view := func(entries map[string]aggregations.Tile) *lookupView {
		var e entityView
		for id, tile := range entries {
			e.series[e.add(id, 0)].SetTile(tile)
		}
		var v lookupView
		if err := v.parse(e.encode(nil)); err != nil {
			t.Fatal(err)
		}
		return &v
	}
	two := view(map[string]aggregations.Tile{keys.SeenFeatureID("a"): marker(100), keys.SeenFeatureID("b"): marker(50), "f@1": {Start: 0}})
	for _, c := range []struct {
		name string
		v    *lookupView
		T    int64
		want bool
	}{
		{"before every marker", two, 50, false},
		{"after the earliest marker of two sources", two, 51, true},
		{"a marker alone (every tile gone)", view(map[string]aggregations.Tile{keys.SeenFeatureID("a"): marker(10)}), 11, true},
		{"no marker, a series: known (views before markers)", view(map[string]aggregations.Tile{"f@1": marker(10)}), 5, true},
		{"nothing at all", view(nil), 1 << 40, false},
	} {
		got, err := knownAt(c.v, c.T)
		if err != nil || got != c.want {
			t.Errorf("%s: known %v (%v), want %v", c.name, got, err, c.want)
		}
	}
}
