package entity

import (
	"errors"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

func TestRoundTripKeepsNamedSeriesAndSkipsUnknown(t *testing.T) {
	w := aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Hour}
	series := make([]aggregations.Series, 2)
	for i := int64(0); i < 50; i++ {
		series[0].Apply(w, aggregations.Event{TS: 1_700_000_000_000 + i*600_000, Seq: i, Value: float64(i)}, aggregations.NoClock)
		series[1].Apply(w, aggregations.Event{TS: 1_700_000_000_000 + i*60_000, Seq: i, Value: 1}, aggregations.NoClock)
	}
	b := Append(nil, []string{"a@1", "b@1"}, series)
	var got aggregations.Series
	if err := Decode(b, func(id string) *aggregations.Series {
		if id == "b@1" {
			return &got
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	T := int64(1_700_000_000_000 + 100*600_000)
	if got.Read(w, T) != series[1].Read(w, T) {
		t.Fatal("decoded series reads differently")
	}
	if err := Decode(b[:len(b)-3], func(string) *aggregations.Series { return nil }); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Fatalf("truncated value: %v", err)
	}
}
