package entity

import (
	"bytes"
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

// DecodeEncoded passes each series' encoding right after decoding it: the
// bytes Append wrote for it, which encode the series decoded.
func TestDecodeEncodedPassesEachSeriesBytes(t *testing.T) {
	w := aggregations.Window{Size: aggregations.Day, Hop: aggregations.Hour}
	series := make([]aggregations.Series, 3)
	for i := range series {
		for j := range 5 * (i + 1) {
			series[i].Apply(w, aggregations.Event{TS: 1_700_000_000_000 + int64(j)*1_800_000, Seq: int64(j), Value: float64(i * j)}, aggregations.NoClock)
		}
	}
	ids := []string{"a@1", "b@1", "c@1"}
	b := Append(nil, ids, series)
	into := make([]aggregations.Series, len(ids))
	var got [][]byte
	cur := -1
	if err := DecodeEncoded(b, func(id []byte) *aggregations.Series {
		cur++
		if string(id) != ids[cur] {
			t.Fatalf("series %d is %s, want %s", cur, id, ids[cur])
		}
		return &into[cur]
	}, func(enc []byte) {
		if !bytes.Equal(enc, aggregations.AppendSeries(nil, &into[cur])) {
			t.Errorf("series %d: encoding %x is not that of the series decoded", cur, enc)
		}
		got = append(got, enc)
	}); err != nil {
		t.Fatal(err)
	}
	for i := range series {
		if want := aggregations.AppendSeries(nil, &series[i]); i >= len(got) || !bytes.Equal(got[i], want) {
			t.Fatalf("series %d: passed %x, want %x", i, got, want)
		}
	}
}
