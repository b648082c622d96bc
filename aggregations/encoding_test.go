package aggregations_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
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
		{"typical tile", aggregations.Tile{Start: 1_700_000_000_000, IR: irOf(ev{TS: 1_700_000_000_500, Seq: 123456, Value: 1}, ev{TS: 1_700_000_000_900, Seq: 123457, Value: 9.75})}, 72},
		{"negative zero survives", aggregations.Tile{Start: 10, IR: aggregations.IR{Count: 1, Sum: math.Copysign(0, -1), Min: math.Copysign(0, -1), Max: math.Copysign(0, -1), Last: math.Copysign(0, -1), LastTS: 10}}, 64},
		{"pending events", aggregations.Tile{Start: 100, IR: irOf(ev{TS: 101, Value: 1}), Pending: []ev{{TS: 150, Seq: 9, Value: -3}, {TS: 199, Seq: 2, Value: 0}}}, 80},
		{"base pseudo-tile", aggregations.Tile{Start: aggregations.BaseStart, IR: irOf(ev{TS: 5, Seq: 1, Value: 7})}, 64},
		{"extreme values", aggregations.Tile{Start: math.MaxInt64 - 5, IR: aggregations.IR{Count: math.MaxInt64, Sum: math.MaxFloat64, Min: -math.MaxFloat64, Max: math.Inf(1), Last: math.SmallestNonzeroFloat64, LastTS: math.MinInt64, LastSeq: math.MaxInt64}}, 100},
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

// TestDecodeOriginalFormat decodes tiles and series written in the format that
// predates the extended flags (hand-assembled here byte by byte, as the old
// encoder wrote them): feature logs and snapshots hold such tiles. Their derived
// fields read as Mean = Sum/Count and First = Last, and they re-encode to the
// same bytes.
func TestDecodeOriginalFormat(t *testing.T) {
	f64 := func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	start := int64(1_700_000_000_000)
	old := []byte{0x7F} // Count|Sum|Min|Max|Last|LastTS|LastSeq
	old = binary.AppendVarint(old, start)
	old = binary.AppendVarint(old, 3)
	old = f64(old, 7.5)
	old = f64(old, 1)
	old = f64(old, 4.5)
	old = f64(old, 2)
	old = binary.AppendVarint(old, 900)
	old = binary.AppendVarint(old, 123457)
	got, rest, err := aggregations.DecodeTile(old)
	if err != nil || len(rest) != 0 {
		t.Fatalf("DecodeTile(original format) = %v, rest %x", err, rest)
	}
	want := aggregations.IR{Count: 3, Sum: 7.5, Min: 1, Max: 4.5, Last: 2, LastTS: start + 900, LastSeq: 123457,
		Mean: 2.5, First: 2, FirstTS: start + 900, FirstSeq: 123457}
	if got.Start != start || got.IR != want {
		t.Fatalf("decoded %+v, want start %d and %+v", got, start, want)
	}
	for _, k := range []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Avg, aggregations.Min, aggregations.Max, aggregations.Last} {
		v, _ := aggregations.Finalize(k, got.IR)
		if w, _ := aggregations.Finalize(k, aggregations.IR{Count: 3, Sum: 7.5, Min: 1, Max: 4.5, Last: 2}); v != w {
			t.Errorf("%v of the old tile = %v, want %v", k, v, w)
		}
	}
	if again := aggregations.AppendTile(nil, got); string(again) != string(old) {
		t.Errorf("re-encoded %x, want the original %x", again, old)
	}

	// A version-1 series: an empty base, one old tile with a pending event.
	series := []byte{1, 0, 1, 0x80 | 0x01}
	series = binary.AppendVarint(series, 100)
	series = binary.AppendVarint(series, 1) // count
	series = binary.AppendUvarint(series, 1)
	series = binary.AppendVarint(series, 5) // pending TS - start
	series = binary.AppendVarint(series, 9) // seq
	series = f64(series, 0.5)
	var s aggregations.Series
	if _, err := aggregations.DecodeSeries(series, &s); err != nil {
		t.Fatalf("DecodeSeries(original format): %v", err)
	}
	if len(s.Tiles) != 1 || s.Tiles[0].IR.Count != 1 || len(s.Tiles[0].Pending) != 1 || s.Tiles[0].Pending[0].Value != 0.5 {
		t.Fatalf("decoded %+v", s)
	}
	if again := aggregations.AppendSeries(nil, &s); string(again) != string(series) {
		t.Errorf("re-encoded %x, want the original %x", again, series)
	}
}

// sketchSeries is a series of each sketch kind, with tiles holding sparse and
// dense HyperLogLogs or signed quantile buckets.
func sketchSeries() map[string]struct {
	w aggregations.Window
	s *aggregations.Series
} {
	out := make(map[string]struct {
		w aggregations.Window
		s *aggregations.Series
	})
	rng := rand.New(rand.NewPCG(3, 3))
	for name, w := range map[string]aggregations.Window{
		"approx_distinct":   aggregations.Window{Size: 0, Hop: 10}.For(aggregations.ApproxDistinct, 0),
		"approx_percentile": aggregations.Window{Size: 0, Hop: 10}.For(aggregations.ApproxPercentile, 0.95),
		"first_k":           aggregations.Window{Size: 0, Hop: 10}.For(aggregations.FirstK, 0).WithK(1000),
		"last_k":            aggregations.Window{Size: 0, Hop: 10}.For(aggregations.LastK, 0).WithK(7),
		"top_k":             aggregations.Window{Size: 0, Hop: 10}.For(aggregations.TopK, 0).WithK(10),
	} {
		var s aggregations.Series
		for i := range 3000 {
			ts := int64(i % 40) // tile [0,10) gets 750 events, enough for a dense HLL only when merged into base
			if i < 2000 {
				ts = 0 // one tile of 2000 distinct values: dense
			}
			s.Apply(w, ev{TS: ts, Seq: int64(i), Value: float64(rng.IntN(1<<20)) - 1000}, 35)
		}
		s.Expire(w, 35, nil)
		out[name] = struct {
			w aggregations.Window
			s *aggregations.Series
		}{w, &s}
	}
	return out
}

func TestSketchTilesRoundTrip(t *testing.T) {
	for name, x := range sketchSeries() {
		t.Run(name, func(t *testing.T) {
			b := aggregations.AppendSeries(nil, x.s)
			var d aggregations.Series
			rest, err := aggregations.DecodeSeries(b, &d)
			if err != nil || len(rest) != 0 {
				t.Fatalf("DecodeSeries: %v, rest %d bytes", err, len(rest))
			}
			if again := aggregations.AppendSeries(nil, &d); string(again) != string(b) {
				t.Fatal("re-encoding differs")
			}
			for _, T := range []int64{5, 20, 36, 1000} {
				if irBytes(d.Read(x.w, T)) != irBytes(x.s.Read(x.w, T)) {
					t.Errorf("T=%d: decoded series reads differently", T)
				}
			}
			for n := range len(b) {
				var s aggregations.Series
				if _, err := aggregations.DecodeSeries(b[:n], &s); !errors.Is(err, aggregations.ErrCorrupt) {
					t.Fatalf("DecodeSeries(first %d of %d bytes) error = %v, want ErrCorrupt", n, len(b), err)
				}
			}
		})
	}
}

func TestDecodeRejectsCorruptSketches(t *testing.T) {
	f64 := func(b []byte, v float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	// ext builds an extended tile at start 0 with count 1 and the given tail.
	ext := func(flags uint64, tail ...byte) []byte {
		b := binary.AppendUvarint([]byte{0x7E}, flags)
		b = append(b, 0) // start
		b = binary.AppendVarint(b, 1)
		return append(b, tail...)
	}
	const (
		count = 1
		hll   = 1 << 11
		qs    = 1 << 12
		fk    = 1 << 13
		lk    = 1 << 14
	)
	// ev10 is one listed event: ts 0, seq s, value 0 (10 bytes).
	ev10 := func(s byte) []byte { return append([]byte{0, s}, make([]byte, 8)...) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		src  []byte
	}{
		{"extended flags that fit one byte", ext(count)},
		{"unknown extended flag", ext(count | 1<<20)},
		{"hll of another precision", ext(count|hll, 14, 1, 7)},
		{"hll with no register", ext(count|hll, 12, 0, 0)},
		{"hll register out of range", ext(count|hll, 12, 0, 1, 5, 60)},
		{"hll register zero", ext(count|hll, 12, 0, 1, 5, 0)},
		{"hll indexes out of order", ext(count|hll, 12, 0, 2, 5, 1, 0, 1)},
		{"hll index past the registers", ext(count|hll, 12, 0, 1, 0xff, 0xff, 0x03, 1)},
		{"hll exact hashes out of order", ext(count|hll, 12, 2, 9, 0)},
		{"hll with more exact hashes than it keeps", append(append(ext(count|hll, 12), binary.AppendUvarint(nil, 129)...), make([]byte, 129)...)},
		{"hll exact hashes wrapping around", append(ext(count|hll, 12, 2), append(binary.AppendUvarint(nil, math.MaxUint64), 2)...)},
		{"quantile sketch counting other events than the IR", append(f64(ext(count|qs), 0.5), 0, 1, 0, 2, 0)},
		{"quantile out of range", append(f64(ext(count|qs), 1.5), 1, 0, 0)},
		{"empty quantile bucket", append(f64(ext(count|qs), 0.5), 0, 1, 0, 0, 0)},
		{"two sketches", append(f64(append(ext(count|hll|qs), 12, 1, 5), 0.5), 1, 0, 0)},
		{"quantile bucket count larger than the input", append(f64(ext(count|qs), 0.5), 0, 0xff, 0xff, 0x03)},
		{"k zero", cat(ext(count|lk, 0, 1), ev10(1))},
		{"k above MaxK", cat(ext(count|lk, 0xe9, 0x07, 1), ev10(1))}, // 1001
		{"no listed event", ext(count|lk, 3, 0)},
		{"more listed events than k", cat(ext(count|fk, 1, 2), ev10(1), ev10(2))},
		{"more listed events than the IR's count", cat(ext(count|fk, 3, 2), ev10(1), ev10(2))},
		{"fewer listed events than min(k, count)", cat(ext(count|fk, 3, 1)[:0], binary.AppendUvarint([]byte{0x7E}, fk|count), []byte{0}, binary.AppendVarint(nil, 2), []byte{3, 1}, ev10(1))},
		{"first_k events out of order", cat(ext(count|fk, 3, 2)[:0], binary.AppendUvarint([]byte{0x7E}, fk|count), []byte{0}, binary.AppendVarint(nil, 2), []byte{3, 2}, ev10(4), ev10(2))},
		{"last_k events out of order", cat(ext(count|lk, 3, 2)[:0], binary.AppendUvarint([]byte{0x7E}, lk|count), []byte{0}, binary.AppendVarint(nil, 2), []byte{3, 2}, ev10(2), ev10(4))},
		{"both lists", cat(ext(count|fk|lk, 1, 1), ev10(1), []byte{1, 1}, ev10(1))},
		{"a list and a sketch", cat(ext(count|hll|lk, 12, 1, 5, 1, 1), ev10(1))},
		{"listed events larger than the input", ext(count|lk, 3, 1, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := aggregations.DecodeTile(tc.src); !errors.Is(err, aggregations.ErrCorrupt) {
				t.Fatalf("DecodeTile error = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("a valid hand-built extended tile decodes (the cases above fail for their stated reason)", func(t *testing.T) {
		for _, src := range [][]byte{
			append(f64(ext(count|qs), 0.5), 0, 1, 0, 1, 0),
			ext(count|hll, 12, 0, 1, 5, 1),
			ext(count|hll, 12, 2, 9, 1),
			cat(ext(count|lk, 3, 1), ev10(1)),
			cat(ext(count|fk, 1000&0x7f|0x80, 1000>>7, 1), ev10(1)),
			cat(binary.AppendUvarint([]byte{0x7E}, fk|count), []byte{0}, binary.AppendVarint(nil, 2), []byte{3, 2}, ev10(2), ev10(4)),
			cat(binary.AppendUvarint([]byte{0x7E}, lk|count), []byte{0}, binary.AppendVarint(nil, 2), []byte{3, 2}, ev10(4), ev10(2)),
		} {
			if _, rest, err := aggregations.DecodeTile(src); err != nil || len(rest) != 0 {
				t.Fatalf("DecodeTile(%x) = %v, rest %x", src, err, rest)
			}
		}
	})
}

// FuzzDecodeTile checks that decoding arbitrary bytes never panics, and that a
// decoded tile re-encodes canonically: encoding it, decoding that and encoding
// again gives the same bytes, and both decode to tiles that read the same.
func FuzzDecodeTile(f *testing.F) {
	for _, x := range sketchSeries() {
		for _, tile := range x.s.Tiles {
			f.Add(aggregations.AppendTile(nil, tile))
		}
		if base, ok := x.s.Tile(aggregations.BaseStart); ok {
			f.Add(aggregations.AppendTile(nil, base))
		}
	}
	for _, tile := range validSeries().Tiles {
		f.Add(aggregations.AppendTile(nil, tile))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		tile, _, err := aggregations.DecodeTile(src)
		if err != nil {
			if !errors.Is(err, aggregations.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		b1 := aggregations.AppendTile(nil, tile)
		again, rest, err := aggregations.DecodeTile(b1)
		if err != nil || len(rest) != 0 {
			t.Fatalf("re-decoding %x: %v, rest %x", b1, err, rest)
		}
		if b2 := aggregations.AppendTile(nil, again); string(b2) != string(b1) {
			t.Fatalf("not canonical: %x then %x", b1, b2)
		}
		for _, k := range aggregations.Kinds() {
			v1, ok1 := aggregations.Finalize(k, tile.IR)
			v2, ok2 := aggregations.Finalize(k, again.IR)
			if ok1 != ok2 || (math.Float64bits(v1) != math.Float64bits(v2) && !(math.IsNaN(v1) && math.IsNaN(v2))) {
				t.Fatalf("%v: %v, %v after a round trip, %v, %v before", k, v2, ok2, v1, ok1)
			}
		}
	})
}
