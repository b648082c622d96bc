package aggregations

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestSearchEqualsABinarySearch checks search against sort.Search on series
// of every shape: evenly spaced, sparse, clustered, single tiles, and Starts
// near the ends of int64, for starts in and around them.
func TestSearchEqualsABinarySearch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(starts []int64, start int64) {
		t.Helper()
		s := Series{Tiles: make([]Tile, len(starts))}
		for i, st := range starts {
			s.Tiles[i].Start = st
		}
		want := sort.Search(len(starts), func(i int) bool { return starts[i] >= start })
		wantFound := want < len(starts) && starts[want] == start
		got, found := s.search(start)
		if got != want || found != wantFound {
			t.Fatalf("search(%d) in %v = %d, %v; want %d, %v", start, starts, got, found, want, wantFound)
		}
	}
	shapes := []func(n int) []int64{
		func(n int) []int64 { // evenly spaced: a busy entity's daily tiles
			out := make([]int64, n)
			for i := range out {
				out[i] = 1_700_000_000_000 + int64(i)*86_400_000
			}
			return out
		},
		func(n int) []int64 { // sparse multiples of a hop
			out, at := make([]int64, n), int64(1_700_000_000_000)
			for i := range out {
				at += 300_000 * (1 + r.Int64N(50))
				out[i] = at
			}
			return out
		},
		func(n int) []int64 { // clustered: a burst, a gap, a burst
			out, at := make([]int64, n), int64(-1_000)
			for i := range out {
				if i == n/2 {
					at += 1 << 40
				}
				at += 1 + r.Int64N(3)
				out[i] = at
			}
			return out
		},
		func(n int) []int64 { // the ends of int64 (BaseStart is never a tile)
			out := make([]int64, n)
			for i := range out {
				out[i] = math.MinInt64 + 1 + int64(i)
			}
			if n > 1 {
				out[n-1] = math.MaxInt64
			}
			if n > 2 {
				out[n-2] = math.MaxInt64 - 1
			}
			return out
		},
	}
	for si, shape := range shapes {
		for n := 0; n <= 70; n++ {
			starts := shape(n)
			for i := 1; i < n; i++ {
				if starts[i] <= starts[i-1] {
					t.Fatalf("shape %d: starts not increasing at %d: %v", si, i, starts)
				}
			}
			probes := []int64{math.MinInt64 + 1, math.MaxInt64}
			for _, st := range starts {
				probes = append(probes, st, st-1, st+1)
			}
			if n > 0 { // anywhere between the first and last tile (unsigned: the span may pass int64)
				span := uint64(starts[n-1]) - uint64(starts[0])
				for range 50 {
					probes = append(probes, int64(uint64(starts[0])+r.Uint64N(span+1)))
				}
			}
			for _, p := range probes {
				check(starts, p)
			}
		}
	}
}

// BenchmarkSearchCold searches random starts in many series of a month of
// daily tiles each, more than the CPU's caches hold (as in a replay of
// history over thousands of entities), so that every tile read can miss.
func BenchmarkSearchCold(b *testing.B) {
	const series, tiles = 40_000, 30
	const day = 86_400_000
	all := make([]Series, series)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range all {
		all[i].Tiles = make([]Tile, 0, tiles)
		for d := range tiles {
			if r.IntN(10) < 8 { // most days
				all[i].Tiles = append(all[i].Tiles, Tile{Start: int64(d) * day})
			}
		}
	}
	idx := make([]int, 1<<16)
	at := make([]int64, len(idx))
	for i := range idx {
		idx[i], at[i] = r.IntN(series), int64(r.IntN(tiles))*day
	}
	b.ResetTimer()
	found := 0
	for i := range b.N {
		j := i & (len(idx) - 1)
		if _, ok := all[idx[j]].search(at[j]); ok {
			found++
		}
	}
	if found == 0 {
		b.Fatal("found nothing")
	}
}
