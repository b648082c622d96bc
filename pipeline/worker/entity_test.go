package worker

import (
	"errors"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

var testWindow = aggregations.Window{Size: aggregations.Day, Hop: aggregations.Hour}

const t0 = int64(1_700_000_000_000)

// seriesAt returns a series holding one event at each of the times.
func seriesAt(ts ...int64) aggregations.Series {
	var s aggregations.Series
	for i, t := range ts {
		s.Apply(testWindow, aggregations.Event{TS: t, Seq: int64(i), Value: 1}, aggregations.NoClock)
	}
	return s
}

func planOf(ids ...string) *events.Plan {
	p := &events.Plan{}
	for _, id := range ids {
		p.Features = append(p.Features, events.FeaturePlan{ID: id, Window: testWindow})
	}
	return p
}

// TestValueMaxTSCoversEverySeries: the newest event of an entity may be in
// any of its series, not only the last one decoded.
func TestValueMaxTSCoversEverySeries(t *testing.T) {
	newest := t0 + 5*aggregations.Hour
	cases := map[string][]aggregations.Series{
		"newest in the first series": {seriesAt(t0, newest), seriesAt(t0 + aggregations.Hour)},
		"newest in the middle":       {seriesAt(t0), seriesAt(newest), seriesAt(t0 + 2*aggregations.Hour)},
		"newest in the last series":  {seriesAt(t0), seriesAt(newest)},
		"later series empty":         {seriesAt(newest), {}},
	}
	var scratch []aggregations.Series
	for name, series := range cases {
		ids := []string{"a@1", "b@1", "c@1"}[:len(series)]
		got, s, err := valueMaxTS(entity.Append(nil, ids, series), scratch)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		scratch = s
		if got != newest {
			t.Errorf("%s: max event time %d, want %d", name, got, newest)
		}
	}
	if got, _, err := valueMaxTS(entity.Append(nil, []string{"a@1"}, []aggregations.Series{{}}), nil); err != nil || got != -1 {
		t.Errorf("empty series: %d, %v; want -1", got, err)
	}
	v := entity.Append(nil, []string{"a@1"}, []aggregations.Series{seriesAt(newest)})
	if _, _, err := valueMaxTS(v[:len(v)-2], nil); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Errorf("truncated value: %v", err)
	}
}

// TestDecodeEntityMatchesByID: series land at their feature's plan index
// whatever the stored order; dropped features are skipped, new ones empty.
func TestDecodeEntityMatchesByID(t *testing.T) {
	stored := []aggregations.Series{seriesAt(t0), seriesAt(t0 + aggregations.Hour), seriesAt(t0 + 2*aggregations.Hour)}
	v := entity.Append(nil, []string{"a@1", "b@1", "c@1"}, stored)
	cases := map[string]struct {
		plan *events.Plan
		want []int // stored index per plan feature, -1: empty
	}{
		"same order":         {planOf("a@1", "b@1", "c@1"), []int{0, 1, 2}},
		"reordered":          {planOf("c@1", "a@1", "b@1"), []int{2, 0, 1}},
		"one dropped":        {planOf("a@1", "c@1"), []int{0, 2}},
		"one added in front": {planOf("z@1", "a@1", "b@1", "c@1"), []int{-1, 0, 1, 2}},
	}
	for name, c := range cases {
		var es entityState
		if err := decodeEntity(v, c.plan, &es); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(es.series) != len(c.plan.Features) {
			t.Fatalf("%s: %d series for %d features", name, len(es.series), len(c.plan.Features))
		}
		for i, j := range c.want {
			got := seriesMaxTS(&es.series[i])
			want := int64(-1)
			if j >= 0 {
				want = seriesMaxTS(&stored[j])
			}
			if got != want {
				t.Errorf("%s: feature %s holds events through %d, want %d", name, c.plan.Features[i].ID, got, want)
			}
		}
	}
}

// TestFirstSeenMarker: the marker is the smallest event time applied, it
// survives the state value round trip beside the features, and a replayed
// record republishes it without changing it.
func TestFirstSeenMarker(t *testing.T) {
	w := &Worker{}
	ps := &partState{plan: planOf("a@1"), seenID: "\x00seen:src", dirty: map[dirtyTile]int64{}}
	es := &entityState{key: "k", series: make([]aggregations.Series, 1)}
	for _, ts := range []int64{t0 + 5, t0 + 9, t0 + 2, t0 + 7} {
		w.noteSeen(ps, es, ts, false)
	}
	if es.seen.Base.LastTS != t0+2 {
		t.Fatalf("marker %d, want the smallest event time %d", es.seen.Base.LastTS, t0+2)
	}
	if _, ok := ps.dirty[dirtyTile{es, seenFeature, aggregations.BaseStart}]; !ok || len(ps.modified) != 1 {
		t.Fatalf("marker record not staged: dirty %v, modified %d", ps.dirty, len(ps.modified))
	}
	var back entityState
	if err := decodeEntity(encodeEntity(nil, ps.plan, ps.seenID, es), ps.plan, &back); err != nil {
		t.Fatal(err)
	}
	if back.seen.Base.LastTS != t0+2 {
		t.Fatalf("round trip: marker %d", back.seen.Base.LastTS)
	}
	clear(ps.dirty)
	w.noteSeen(ps, &back, t0-1000, true)
	if back.seen.Base.LastTS != t0+2 || len(ps.dirty) != 1 {
		t.Fatalf("a replayed record changed the marker to %d or was not republished (%d dirty)", back.seen.Base.LastTS, len(ps.dirty))
	}
	// A value without a marker (written before markers) decodes without one.
	var old entityState
	if err := decodeEntity(entity.Append(nil, ps.plan.IDs(), es.series), ps.plan, &old); err != nil || !old.seen.Base.Empty() {
		t.Fatalf("value without marker: %v, marker %v", err, old.seen.Base)
	}
}
