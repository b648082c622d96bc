package aggregations

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// sizeWindows are windows of every kind of IR part: exact, each sketch and
// list, strings, and each of those bucketed.
func sizeWindows() map[string]Window {
	base := Window{Size: 0, Hop: 10}
	ws := map[string]Window{
		"exact":      base,
		"hll":        base.For(ApproxDistinct, 0),
		"quantiles":  base.For(ApproxPercentile, 0.9),
		"first_k":    base.For(FirstK, 0).WithK(7),
		"last_k str": base.For(LastK, 0).WithK(1000).WithStrings(),
		"top_k":      base.For(TopK, 0).WithK(3),
		"top_k str":  base.For(TopK, 0).WithK(3).WithStrings(),
		"last str":   base.For(Last, 0).WithStrings(),
	}
	for name, w := range ws {
		ws[name+" bucketed"] = w.WithBuckets()
	}
	return ws
}

// TestEncodedLenIsTheEncoding holds irLen to the encoder: for IRs of every
// kind, small and past every representation change (an HLL's exact hashes,
// sparse and dense registers; top_k past TopKExactMax; quantiles of both
// signs over a wide range; strings of every length; buckets), in tiles and
// in a lifetime Base, irLen plus the tile's Start is exactly the length of
// AppendTile.
func TestEncodedLenIsTheEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for name, w := range sizeWindows() {
		for _, n := range []int{1, 5, 200, 3000, 20000} {
			var s Series
			for range n {
				v := float64(rng.IntN(3*n)) - float64(n)
				if rng.IntN(4) == 0 {
					v = math.Ldexp(rng.Float64(), rng.IntN(200)-100) * float64(1-2*rng.IntN(2))
				}
				e := Event{TS: int64(rng.IntN(40)) - 20, Seq: int64(rng.Uint32()), Value: v,
					Str: strings.Repeat("é", rng.IntN(8)) + fmt.Sprint(rng.IntN(2*n)), Bucket: fmt.Sprint("b", rng.IntN(12))}
				s.Apply(w, e, NoClock)
			}
			s.Expire(w, 20, nil) // tiles before 0 go into Base
			if n >= 200 && (s.Base.Empty() || len(s.Tiles) == 0) {
				t.Fatalf("%s n=%d: want a Base and tiles", name, n)
			}
			tiles := append([]Tile{{Start: BaseStart, IR: s.Base}}, s.Tiles...)
			for _, tile := range tiles {
				want := len(AppendTile(nil, Tile{Start: tile.Start, IR: tile.IR}))
				if got := varintLen(tile.Start) + irLen(&tile.IR, tile.Start); got != want {
					t.Errorf("%s n=%d tile %d: irLen gives %d bytes, the encoding is %d", name, n, tile.Start, got, want)
				}
			}
		}
	}
}

// TestVarintLens checks the varint sizes at every length boundary.
func TestVarintLens(t *testing.T) {
	for shift := range 64 {
		for _, x := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1} {
			if got, want := uvarintLen(x), len(binary.AppendUvarint(nil, x)); got != want {
				t.Errorf("uvarintLen(%d) = %d, want %d", x, got, want)
			}
			for _, v := range []int64{int64(x), -int64(x)} {
				if got, want := varintLen(v), len(binary.AppendVarint(nil, v)); got != want {
					t.Errorf("varintLen(%d) = %d, want %d", v, got, want)
				}
			}
		}
	}
}
