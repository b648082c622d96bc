package worker

import (
	"encoding/json"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// TestBucketStatsOfListsAreTheirElements: the published-value statistics
// of a bucketed first_k, last_k or top_k (a map of lists) are those of the
// buckets' lists one after the other by increasing key (a top_k's values
// without their counts), as backfill's manifest statistics
// (backfill.bucketStats), not a number per bucket.
func TestBucketStatsOfListsAreTheirElements(t *testing.T) {
	evs := []aggregations.Event{
		{TS: 10, Seq: 1, Value: 1.5, Str: "m-1", Bucket: "USD"},
		{TS: 20, Seq: 2, Value: 2.5, Str: "m-2", Bucket: "EUR"},
		{TS: 30, Seq: 3, Value: 3.5, Str: "m-2", Bucket: "EUR"},
		{TS: 40, Seq: 4, Value: 4.5, Str: "m-3", Bucket: "EUR"},
	}
	for _, tc := range []struct {
		name    string
		kind    aggregations.Kind
		typ     aggregations.ValueType
		nums    []float64 // EUR's list then USD's
		strs    []string
		strings bool
	}{
		{"last_k of a double", aggregations.LastK, aggregations.TypeDouble, []float64{4.5, 3.5, 1.5}, nil, false},
		{"first_k of a string", aggregations.FirstK, aggregations.TypeString, nil, []string{"m-2", "m-2", "m-1"}, true},
		{"top_k of a string", aggregations.TopK, aggregations.TypeString, nil, []string{"m-2", "m-3", "m-1"}, true},
		{"top_k of a double", aggregations.TopK, aggregations.TypeDouble, []float64{2.5, 3.5, 1.5}, nil, false},
	} {
		w := aggregations.Window{}.For(tc.kind, 0).WithK(2).WithBuckets()
		if tc.strings {
			w = w.WithStrings()
		}
		var s aggregations.Series
		for _, e := range evs {
			s.Apply(w, e, aggregations.NoClock)
		}
		f := &events.FeaturePlan{Feature: &config.Feature{Aggregation: tc.kind, ValueType: tc.typ, Bucket: "currency", MaxBuckets: 10}, Window: w, Kind: tc.kind}
		got, want := monitor.NewStats(), monitor.NewStats()
		addBucketStats(got, f, s.Read(w, 100))
		if tc.strings {
			want.AddStringList(tc.strs, true)
		} else {
			want.AddList(tc.nums, true)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("%s: statistics\n %s\nwant\n %s", tc.name, gj, wj)
		}
	}
}
