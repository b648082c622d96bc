package aggregations_test

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
)

func TestTileRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tile     aggregations.Tile
		maxBytes int
	}{
		{"empty tile is a flags byte and its start", aggregations.Tile{Start: 1_700_000_000_000}, 1 + binary.MaxVarintLen64},
		{"zero start and empty IR is two bytes", aggregations.Tile{}, 2},
		{"negative start", aggregations.Tile{Start: -86_400_000, IR: irOf(ev{TS: -86_399_999, Seq: 3, Value: 2.5})}, 64},
		{"typical tile", aggregations.Tile{Start: 1_700_000_000_000, IR: irOf(ev{TS: 1_700_000_000_500, Seq: 123456, Value: 1}, ev{TS: 1_700_000_000_900, Seq: 123457, Value: 9.75})}, 56},
		{"negative zero survives", aggregations.Tile{Start: 10, IR: aggregations.IR{Count: 1, Sum: math.Copysign(0, -1), Min: math.Copysign(0, -1), Max: math.Copysign(0, -1), Last: math.Copysign(0, -1), LastTS: 10}}, 64},
		{"pending events", aggregations.Tile{Start: 100, IR: irOf(ev{TS: 101, Value: 1}), Pending: []ev{{TS: 150, Seq: 9, Value: -3}, {TS: 199, Seq: 2, Value: 0}}}, 80},
		{"base pseudo-tile", aggregations.Tile{Start: aggregations.BaseStart, IR: irOf(ev{TS: 5, Seq: 1, Value: 7})}, 64},
		{"extreme values", aggregations.Tile{Start: math.MaxInt64 - 5, IR: aggregations.IR{Count: math.MaxInt64, Sum: math.MaxFloat64, Min: -math.MaxFloat64, Max: math.Inf(1), Last: math.SmallestNonzeroFloat64, LastTS: math.MinInt64, LastSeq: math.MaxInt64}}, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := aggregations.AppendTile([]byte("prefix"), tc.tile)
			if string(b[:6]) != "prefix" {
				t.Fatal("AppendTile must append to dst")
			}
			if n := len(b) - 6; n > tc.maxBytes {
				t.Errorf("encoded in %d bytes, want at most %d", n, tc.maxBytes)
			}
			got, rest, err := aggregations.DecodeTile(append(b[6:], 'x'))
			if err != nil {
				t.Fatalf("DecodeTile: %v", err)
			}
			if string(rest) != "x" {
				t.Errorf("rest = %q, want the bytes after the tile", rest)
			}
			// DeepEqual treats -0 and 0 as equal; the bits tell them apart.
			if !reflect.DeepEqual(got, tc.tile) || floatBits(got.IR) != floatBits(tc.tile.IR) {
				t.Errorf("round trip = %+v, want %+v (float bits %x, want %x)", got, tc.tile, floatBits(got.IR), floatBits(tc.tile.IR))
			}
		})
	}
}

// floatBits is the bit patterns of ir's Sum, Min, Max and Last, which unlike
// == distinguish -0 from 0.
func floatBits(ir aggregations.IR) [4]uint64 {
	return [4]uint64{math.Float64bits(ir.Sum), math.Float64bits(ir.Min), math.Float64bits(ir.Max), math.Float64bits(ir.Last)}
}

func validSeries() *aggregations.Series {
	var s aggregations.Series
	w := aggregations.Window{Size: 0, Hop: 10}
	for _, e := range []ev{{TS: -5, Seq: 1, Value: 1}, {TS: 95, Seq: 2, Value: 2}, {TS: 105, Seq: 3, Value: 3}, {TS: 120, Seq: 4, Value: 4}} {
		s.Apply(w, e, 110)
	}
	return &s
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	good := aggregations.AppendSeries(nil, validSeries())
	tile := func(start int64) []byte { return aggregations.AppendTile(nil, aggregations.Tile{Start: start}) }
	series := func(tiles ...[]byte) []byte {
		b := []byte{1, 0}
		b = binary.AppendUvarint(b, uint64(len(tiles)))
		for _, t := range tiles {
			b = append(b, t...)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		src  []byte
	}{
		{"empty input", nil},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"tiles out of order", series(tile(20), tile(10))},
		{"duplicate tiles", series(tile(10), tile(10))},
		{"a tile at the base start", series(tile(aggregations.BaseStart))},
		{"tile count larger than the input", append([]byte{1, 0}, binary.AppendUvarint(nil, 1<<40)...)},
		{"negative count", series(append([]byte{0x01}, append(binary.AppendVarint(nil, 0), binary.AppendVarint(nil, -1)...)...))},
		{"zero count with other fields", series(binary.LittleEndian.AppendUint64([]byte{0x02, 0}, math.Float64bits(1)))},
		{"pending count larger than the input", series(append([]byte{0x80, 0}, binary.AppendUvarint(nil, 1<<50)...))},
		{"pending flag with no events", series([]byte{0x80, 0, 0})},
		{"base with pending events", []byte{1, 0x80, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSeries()
			if _, err := aggregations.DecodeSeries(tc.src, s); !errors.Is(err, aggregations.ErrCorrupt) {
				t.Fatalf("DecodeSeries error = %v, want ErrCorrupt", err)
			}
			if len(s.Tiles) != 0 || !s.Base.Empty() {
				t.Errorf("series not reset after an error: %+v", s)
			}
		})
	}
	t.Run("every truncation of a valid encoding is an error, not a panic", func(t *testing.T) {
		for n := range len(good) {
			var s aggregations.Series
			if _, err := aggregations.DecodeSeries(good[:n], &s); !errors.Is(err, aggregations.ErrCorrupt) {
				t.Fatalf("DecodeSeries(first %d of %d bytes) error = %v, want ErrCorrupt", n, len(good), err)
			}
		}
		tb := aggregations.AppendTile(nil, validSeries().Tiles[1])
		for n := range len(tb) {
			if _, _, err := aggregations.DecodeTile(tb[:n]); !errors.Is(err, aggregations.ErrCorrupt) {
				t.Fatalf("DecodeTile(first %d of %d bytes) error = %v, want ErrCorrupt", n, len(tb), err)
			}
		}
	})
}

func TestDecodeSeriesReusesCapacity(t *testing.T) {
	src := validSeries()
	src.Tiles[len(src.Tiles)-1].Pending = nil // pending events would be copied into reused storage too
	b := aggregations.AppendSeries(nil, src)
	var s aggregations.Series
	if _, err := aggregations.DecodeSeries(b, &s); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := aggregations.DecodeSeries(b, &s); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("DecodeSeries into a series with enough capacity allocates %v times", n)
	}
	if !reflect.DeepEqual(&s, src) {
		t.Errorf("decoded %+v, want %+v", s, *src)
	}
}
