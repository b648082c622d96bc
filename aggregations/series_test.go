package aggregations_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

var (
	w30x10 = aggregations.Window{Size: 30, Hop: 10}
	life10 = aggregations.Window{Size: 0, Hop: 10}
)

// clockAtT in TestWindowRules applies events with the worker clock at the read time T,
// as the online path does.
const clockAtT = math.MinInt64 + 1

// TestWindowRules checks the window contract on hand-computed answers, through
// both Series.Read and the aggtest oracle.
func TestWindowRules(t *testing.T) {
	type applied struct {
		e   ev
		now int64
	}
	at := func(now int64, events ...ev) []applied {
		out := make([]applied, len(events))
		for i, e := range events {
			out[i] = applied{e, now}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		w      aggregations.Window
		kind   aggregations.Kind
		events []applied
		T      int64
		want   float64
		wantOK bool
	}{
		{"event exactly at T is excluded", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 99}, ev{TS: 100}), 100, 1, true},
		{"event exactly at T is excluded, also inside a tile", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 104}, ev{TS: 105}, ev{TS: 106}), 105, 1, true},
		{"event exactly at window start is included", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 70}, ev{TS: 99}), 100, 2, true},
		{"event one ms before window start is excluded", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 69}, ev{TS: 99}), 100, 1, true},
		{"sawtooth: window start floors to the hop, so the window grows up to size+hop", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 70}, ev{TS: 75}, ev{TS: 108}), 109, 3, true},
		{"sawtooth: past the next boundary the oldest tile leaves", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 70}, ev{TS: 75}, ev{TS: 108}), 110, 1, true},
		{"negative times floor down", w30x10, aggregations.Sum,
			at(clockAtT, ev{TS: -21, Value: 1}, ev{TS: -20, Value: 2}, ev{TS: -1, Value: 4}), 15, 6, true},
		{"query before all events is an empty window: count is 0", w30x10, aggregations.Count,
			at(clockAtT, ev{TS: 50}), 50, 0, true},
		{"query before all events is an empty window: avg is null", w30x10, aggregations.Avg,
			at(clockAtT, ev{TS: 50, Value: 3}), 50, 0, false},
		{"query long after all events is an empty window: last is null", w30x10, aggregations.Last,
			at(clockAtT, ev{TS: 50, Value: 3}), 1000, 0, false},
		{"lifetime takes every event before T", life10, aggregations.Sum,
			at(clockAtT, ev{TS: -1000, Value: 1}, ev{TS: 5, Value: 2}, ev{TS: 99, Value: 4}, ev{TS: 100, Value: 8}), 100, 7, true},
		{"last is by event time across tiles, not arrival order", w30x10, aggregations.Last,
			at(clockAtT, ev{TS: 95, Seq: 1, Value: 1}, ev{TS: 81, Seq: 2, Value: 2}), 100, 1, true},
		{"tie on ts: larger seq wins for last across tiles and pending", w30x10, aggregations.Last,
			[]applied{{ev{TS: 95, Seq: 9, Value: 1}, 90}, {ev{TS: 95, Seq: 4, Value: 2}, 100}}, 100, 1, true},
		{"late event updates its tile", w30x10, aggregations.Sum,
			[]applied{{ev{TS: 99, Value: 1}, 100}, {ev{TS: 71, Value: 2}, 100}}, 100, 3, true},
		{"event stamped after the clock is read only once T passes it", w30x10, aggregations.Count,
			[]applied{{ev{TS: 99}, 50}, {ev{TS: 120}, 50}}, 100, 1, true},
		{"pending event exactly at T is excluded", w30x10, aggregations.Count,
			[]applied{{ev{TS: 99}, 50}, {ev{TS: 100}, 50}}, 100, 1, true},
		{"pending event just before T is included", w30x10, aggregations.Max,
			[]applied{{ev{TS: 95, Value: 1}, 50}, {ev{TS: 99, Value: 7}, 50}}, 100, 7, true},
		{"event older than the horizon is dropped from a finite window", w30x10, aggregations.Count,
			[]applied{{ev{TS: 59}, 100}, {ev{TS: 60}, 100}}, 100, 0, true},
		{"event older than the horizon goes to base in a lifetime window", life10, aggregations.Count,
			[]applied{{ev{TS: 5}, 100}, {ev{TS: 95}, 100}}, 100, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s aggregations.Series
			var all []ev
			for _, a := range tc.events {
				if a.now == clockAtT {
					a.now = tc.T
				}
				s.Apply(tc.w, a.e, a.now)
				all = append(all, a.e)
			}
			got, ok := aggregations.Finalize(tc.kind, s.Read(tc.w, tc.T))
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Series.Read: %v = %v, %v; want %v, %v", tc.kind, got, ok, tc.want, tc.wantOK)
			}
			got, ok = aggtest.BruteForce(tc.kind, tc.w, all, tc.T)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("aggtest.BruteForce: %v = %v, %v; want %v, %v", tc.kind, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestApplyReturns(t *testing.T) {
	for _, tc := range []struct {
		name        string
		w           aggregations.Window
		e           ev
		now         int64
		wantStart   int64
		wantApplied bool
	}{
		{"applied event reports its tile", w30x10, ev{TS: 95}, 100, 90, true},
		{"negative event time reports the floored tile", w30x10, ev{TS: -5}, 0, -10, true},
		{"event in the oldest kept tile is applied", w30x10, ev{TS: 60}, 100, 60, true},
		{"event older than the horizon is dropped", w30x10, ev{TS: 59}, 100, 50, false},
		{"replays never drop", w30x10, ev{TS: -1e12 + 5}, aggregations.NoClock, -1e12, true},
		{"future event is applied (pending)", w30x10, ev{TS: 500}, 100, 500, true},
		{"lifetime event older than the horizon goes to base", life10, ev{TS: 79}, 100, aggregations.BaseStart, true},
		{"lifetime event inside the horizon keeps its tile", life10, ev{TS: 80}, 100, 80, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s aggregations.Series
			start, ok := s.Apply(tc.w, tc.e, tc.now)
			if start != tc.wantStart || ok != tc.wantApplied {
				t.Fatalf("Apply = %d, %v; want %d, %v", start, ok, tc.wantStart, tc.wantApplied)
			}
			tile, found := s.Tile(start)
			if found != ok {
				t.Fatalf("Tile(%d) found = %v, want %v (series %+v)", start, found, ok, s)
			}
			if ok && tile.IR.Count+int64(len(tile.Pending)) != 1 {
				t.Errorf("tile %+v should hold the event", tile)
			}
		})
	}
}

func TestPending(t *testing.T) {
	var s aggregations.Series
	s.Apply(w30x10, ev{TS: 105, Seq: 1, Value: 1}, 100)
	s.Apply(w30x10, ev{TS: 108, Seq: 2, Value: 2}, 100)
	tile, _ := s.Tile(100)
	if tile.IR.Count != 0 || len(tile.Pending) != 2 {
		t.Fatalf("events after the clock must be pending, got %+v", tile)
	}
	if got := s.Read(w30x10, 106).Count; got != 1 {
		t.Errorf("Read(106) counts %d pending events, want 1 (ts 105 < 106 <= 108)", got)
	}
	// Applying to the tile at a later clock promotes what the clock has passed.
	s.Apply(w30x10, ev{TS: 101, Seq: 3, Value: 4}, 107)
	tile, _ = s.Tile(100)
	if tile.IR.Count != 2 || len(tile.Pending) != 1 || tile.Pending[0].TS != 108 {
		t.Fatalf("after clock 107 want 2 in IR and ts 108 pending, got %+v", tile)
	}
	s.Apply(w30x10, ev{TS: 102, Seq: 4, Value: 8}, 120)
	tile, _ = s.Tile(100)
	if tile.IR.Count != 4 || tile.Pending != nil {
		t.Fatalf("after clock 120 nothing is pending, got %+v", tile)
	}
	if ir := s.Read(w30x10, 110); ir.Sum != 15 || ir.Last != 2 {
		t.Errorf("Read(110) = %+v, want sum 15 and last 2", ir)
	}
	// Tile returns a copy of Pending: changing it does not change the series.
	s.Apply(w30x10, ev{TS: 300, Value: 1}, 200)
	tile, _ = s.Tile(300)
	tile.Pending[0].TS = 301
	if again, _ := s.Tile(300); again.Pending[0].TS != 300 {
		t.Error("Tile must not alias the series' pending events")
	}
}

func TestExpire(t *testing.T) {
	t.Run("finite window drops tiles below the horizon and reports them", func(t *testing.T) {
		var s aggregations.Series
		for _, ts := range []int64{5, 15, 25, 35, 45, 55, 65} {
			s.Apply(w30x10, ev{TS: ts, Value: 1}, aggregations.NoClock)
		}
		removed, baseChanged := s.Expire(w30x10, 95, []int64{-1})
		// Horizon(95) = floor(65, 10) - 10 = 50.
		if !slices.Equal(removed, []int64{-1, 0, 10, 20, 30, 40}) || baseChanged {
			t.Fatalf("Expire = %v, %v; want [-1 0 10 20 30 40] appended to dst, false", removed, baseChanged)
		}
		if len(s.Tiles) != 2 || s.Tiles[0].Start != 50 || !s.Base.Empty() {
			t.Fatalf("kept %+v, want tiles 50 and 60 and no base", s)
		}
		if removed, _ := s.Expire(w30x10, 95, nil); len(removed) != 0 {
			t.Errorf("second Expire removed %v", removed)
		}
	})
	t.Run("lifetime window folds old tiles into base", func(t *testing.T) {
		var s aggregations.Series
		for _, ts := range []int64{5, 15, 95, 105} {
			s.Apply(life10, ev{TS: ts, Value: float64(ts)}, aggregations.NoClock)
		}
		s.Apply(life10, ev{TS: 16, Value: 16}, 10) // pending in tile 10
		before := s.Read(life10, 110)
		removed, baseChanged := s.Expire(life10, 100, nil)
		if !slices.Equal(removed, []int64{0, 10}) || !baseChanged {
			t.Fatalf("Expire = %v, %v; want [0 10], true", removed, baseChanged)
		}
		if s.Base.Count != 3 || s.Base.Sum != 36 {
			t.Errorf("base = %+v, want the 3 events of tiles 0 and 10, pending included", s.Base)
		}
		if after := s.Read(life10, 110); after != before {
			t.Errorf("Read changed by Expire: %+v -> %+v", before, after)
		}
		if b, ok := s.Tile(aggregations.BaseStart); !ok || b.IR != s.Base || b.Start != aggregations.BaseStart {
			t.Errorf("Tile(BaseStart) = %+v, %v", b, ok)
		}
	})
	t.Run("replays expire nothing", func(t *testing.T) {
		var s aggregations.Series
		s.Apply(w30x10, ev{TS: 5}, aggregations.NoClock)
		if removed, _ := s.Expire(w30x10, aggregations.NoClock, nil); len(removed) != 0 || len(s.Tiles) != 1 {
			t.Errorf("Expire(NoClock) removed %v", removed)
		}
	})
}

func TestSetTileDeleteTile(t *testing.T) {
	var s aggregations.Series
	s.SetTile(aggregations.Tile{Start: 20, IR: irOf(ev{TS: 21, Value: 2})})
	s.SetTile(aggregations.Tile{Start: 0, IR: irOf(ev{TS: 1, Value: 1})})
	s.SetTile(aggregations.Tile{Start: 10, Pending: []ev{{TS: 15, Value: 4}}})
	s.SetTile(aggregations.Tile{Start: 20, IR: irOf(ev{TS: 22, Value: 8})}) // replaces
	s.SetTile(aggregations.Tile{Start: aggregations.BaseStart, IR: irOf(ev{TS: -50, Value: 12}), Pending: []ev{{TS: -40, Value: 4}}})
	var starts []int64
	for _, tile := range s.Tiles {
		starts = append(starts, tile.Start)
	}
	if !slices.Equal(starts, []int64{0, 10, 20}) {
		t.Fatalf("tiles %v, want sorted [0 10 20] without duplicates", starts)
	}
	if got := s.Read(life10, 30).Sum; got != 1+4+8+16 {
		t.Errorf("lifetime sum = %v, want 29", got)
	}
	if b, _ := s.Tile(aggregations.BaseStart); b.IR.Count != 2 || b.Pending != nil {
		t.Errorf("base tile %+v: pending events must be folded into base", b)
	}
	if got := s.Read(w30x10, 30).Sum; got != 1+4+8 {
		t.Errorf("finite windows ignore base: sum = %v, want 13", got)
	}
	s.DeleteTile(10)
	s.DeleteTile(11) // absent: no-op
	s.DeleteTile(aggregations.BaseStart)
	if got := s.Read(life10, 30).Sum; got != 1+8 {
		t.Errorf("after deletes sum = %v, want 9", got)
	}
	if _, ok := s.Tile(10); ok {
		t.Error("deleted tile still found")
	}
	if _, ok := s.Tile(aggregations.BaseStart); ok {
		t.Error("empty base reported as present")
	}
}

func TestReadDoesNotAllocate(t *testing.T) {
	var s aggregations.Series
	w := aggregations.Window{Size: 30 * aggregations.Day, Hop: aggregations.Day}
	now := int64(1_700_000_000_000)
	for i := int64(0); i < 40; i++ {
		s.Apply(w, ev{TS: now - i*aggregations.Day/2, Seq: i, Value: float64(i)}, now)
	}
	s.Apply(w, ev{TS: now + 5, Seq: 99, Value: 1}, now) // one pending
	var sink aggregations.IR
	if n := testing.AllocsPerRun(100, func() { sink = s.Read(w, now+10) }); n != 0 {
		t.Errorf("Read allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Apply(w, ev{TS: now - 1, Seq: 1, Value: 2}, now) }); n != 0 {
		t.Errorf("Apply to an existing tile allocates %v times", n)
	}
	if sink.Count == 0 || math.IsNaN(sink.Sum) {
		t.Fatal("unexpected empty read")
	}
}

// TestPendingBudget applies 6,000 events stamped ahead of the clock, each
// with a 250-byte string, to one tile of a last_k of strings: unbounded,
// their pending events would encode to ~1.6 MB (past Kafka's 1 MiB). The
// tile stays within PendingBytesBudget (plus one check's growth); the
// events folded early are the earliest; every event is counted once, and
// a read as of a time after all of them is exact (the brute force).
func TestPendingBudget(t *testing.T) {
	w := aggregations.Window{Size: 1000, Hop: 1000}.For(aggregations.LastK, 0).WithK(5).WithStrings()
	var s aggregations.Series
	var evs []ev
	const now = 10
	for i := range 6000 {
		e := ev{TS: now + int64(i)/10, Seq: int64(i), Str: fmt.Sprintf("%0250d", i)}
		evs = append(evs, e)
		s.Apply(w, e, now)
		if i%100 == 0 {
			if n := len(aggregations.AppendTile(nil, s.Tiles[0])); n > aggregations.PendingBytesBudget+64*300 {
				t.Fatalf("after %d events the tile encodes to %d bytes", i+1, n)
			}
		}
	}
	tile := s.Tiles[0]
	if tile.IR.Count == 0 || len(tile.Pending) == 0 || tile.IR.Count+int64(len(tile.Pending)) != int64(len(evs)) {
		t.Fatalf("IR counts %d, %d pending: want some of each, %d in all", tile.IR.Count, len(tile.Pending), len(evs))
	}
	for _, p := range tile.Pending {
		if p.TS < tile.IR.LastTS {
			t.Fatalf("pending event at %d kept while one at %d was folded: the earliest must fold first", p.TS, tile.IR.LastTS)
		}
	}
	T := int64(now + 1000)
	got, _ := aggregations.FinalizeStringList(aggregations.LastK, s.Read(w, T))
	want, _ := aggtest.BruteForceStringList(aggregations.LastK, w, evs, T)
	if !slices.Equal(got, want) || s.Read(w, T).Count != int64(len(evs)) {
		t.Errorf("read after every event: %d strings, brute force %d", len(got), len(want))
	}
}
