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
	if err := Decode(b, func(id []byte) *aggregations.Series {
		if string(id) == "b@1" {
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
	// Targets found through a map keyed by id (m[string(id)]) decode the same.
	var gotS aggregations.Series
	byID := map[string]*aggregations.Series{"b@1": &gotS}
	if err := Decode(b, func(id []byte) *aggregations.Series { return byID[string(id)] }); err != nil {
		t.Fatal(err)
	}
	if gotS.Read(w, T) != series[1].Read(w, T) {
		t.Fatal("decoded series (map lookup) reads differently")
	}
	if err := Decode(b[:len(b)-3], func([]byte) *aggregations.Series { return nil }); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Fatalf("truncated value: %v", err)
	}
	if err := Decode(append(b[:len(b):len(b)], 0), func([]byte) *aggregations.Series { return nil }); !errors.Is(err, aggregations.ErrCorrupt) {
		t.Fatalf("value with a trailing byte: %v", err)
	}
}

func TestDecodeByteIDsDoesNotAllocate(t *testing.T) {
	w := aggregations.Window{Size: aggregations.Day, Hop: aggregations.Hour}
	series := make([]aggregations.Series, 3)
	for i := range series {
		series[i].Apply(w, aggregations.Event{TS: 1_700_000_000_000, Seq: 1, Value: 1}, aggregations.NoClock)
	}
	ids := []string{"a@1", "b@1", "c@1"}
	b := Append(nil, ids, series)
	into := make([]aggregations.Series, len(ids))
	target := func(id []byte) *aggregations.Series {
		for i, x := range ids {
			if string(id) == x {
				return &into[i]
			}
		}
		return nil
	}
	if err := Decode(b, target); err != nil { // warm up: size the series' tiles
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := Decode(b, target); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Decode allocates %v times per value", n)
	}
}
