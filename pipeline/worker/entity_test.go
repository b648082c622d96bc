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
