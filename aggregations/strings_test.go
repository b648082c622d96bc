package aggregations_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

// The string tests: last, first, first_k and last_k over a string field
// (Event.Str, windows made WithStrings) against the aggtest brute force,
// through Apply with pending events and drops, Expire, the encoding, and
// merges in every order. Values are 0 for every event, as the decoder of a
// string field leaves them, so ties on (ts, seq) are broken by the string.

var stringKinds = []aggregations.Kind{aggregations.Last, aggregations.First, aggregations.FirstK, aggregations.LastK, aggregations.TopK}

// randStringWindow returns a random window of one of stringKinds, made
// WithStrings, and its kind.
func randStringWindow(rng *rand.Rand) (aggregations.Window, aggregations.Kind) {
	w := randWindow(rng)
	k := stringKinds[rng.IntN(len(stringKinds))]
	return w.For(k, 0).WithK([]int{1, 2, 3, 5, 1000}[rng.IntN(5)]).WithStrings(), k
}

// randStringEvents returns randEvents with a string each (short, often
// repeated, sometimes empty or non-ASCII), Value 0 and, sometimes, repeated
// (ts, seq) pairs so that only the string tells two events apart.
func randStringEvents(rng *rand.Rand, n int) []ev {
	words := []string{"", "atm", "grocery", "fuel", "café", "travel", "a", "b"}
	events := randEvents(rng, n)
	for i := range events {
		events[i].Value = 0
		events[i].Str = words[rng.IntN(len(words))]
		if i > 0 && rng.IntN(6) == 0 {
			events[i].TS, events[i].Seq = events[i-1].TS, events[i-1].Seq
		}
	}
	return events
}

// checkStringRead compares the read of s at T with the brute force for k.
func checkStringRead(t *testing.T, s *aggregations.Series, w aggregations.Window, k aggregations.Kind, events []ev, T int64, what string) {
	t.Helper()
	ir := s.Read(w, T)
	if k == aggregations.TopK {
		if msg := stringTopKMismatch(ir, w, events, T); msg != "" {
			t.Fatalf("%s: window %v T=%d: %s\nevents %+v", what, w, T, msg, events)
		}
		return
	}
	if k.List() {
		got, ok := aggregations.FinalizeStringList(k, ir)
		want, wantOK := aggtest.BruteForceStringList(k, w, events, T)
		if ok != wantOK || !slices.Equal(got, want) {
			t.Fatalf("%s: window %v k=%d T=%d %v = %q, %v; brute force %q, %v\nevents %+v", what, w, w.K(), T, k, got, ok, want, wantOK, events)
		}
		return
	}
	got, ok := aggregations.FinalizeString(k, ir)
	want, wantOK := aggtest.BruteForceString(k, w, events, T)
	if ok != wantOK || got != want {
		t.Fatalf("%s: window %v T=%d %v = %q, %v; brute force %q, %v\nevents %+v", what, w, T, k, got, ok, want, wantOK, events)
	}
}

// stringTopKMismatch compares FinalizeStringTopK of ir (exact: few
// distinct strings) with the brute force over the events' strings as of T,
// and returns "" when they are equal.
func stringTopKMismatch(ir aggregations.IR, w aggregations.Window, events []ev, T int64) string {
	got, ok := aggregations.FinalizeStringTopK(ir, w.K())
	typed := make([]aggtest.Typed[string], len(events))
	for i, e := range events {
		typed[i] = aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str}
	}
	want, wantOK := aggtest.BruteForceTopK(w, typed, T, w.K())
	same := ok == wantOK && len(got) == len(want) && aggregations.TopKError(ir) == 0
	for i := 0; same && i < len(got); i++ {
		same = got[i].Value == want[i].Value && got[i].Count == want[i].Count
	}
	if same {
		return ""
	}
	return fmt.Sprintf("top_k k=%d = %+v, %v (error %d); brute force %+v, %v", w.K(), got, ok, aggregations.TopKError(ir), want, wantOK)
}

// TestStringsOnlineExpireAndEncoding applies random string events with
// random clocks (pending, promoted and dropped events), optionally expires,
// and checks every read against the brute force, before and after an
// encoding round trip of the series and of each tile.
func TestStringsOnlineExpireAndEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var pendingStrings, reads int
	for trial := range 3000 {
		w, k := randStringWindow(rng)
		events := randStringEvents(rng, rng.IntN(40))
		var s aggregations.Series
		now, maxNow := randClock(rng, w, events), int64(math.MinInt64)
		for _, e := range events {
			if rng.IntN(2) == 0 {
				now += int64(rng.IntN(3))
			} else {
				now = randClock(rng, w, events)
			}
			maxNow = max(maxNow, now)
			s.Apply(w, e, now)
		}
		if rng.IntN(3) == 0 {
			s.Expire(w, maxNow, nil)
		}
		for _, tile := range s.Tiles {
			for _, p := range tile.Pending {
				if p.Str != "" {
					pendingStrings++
				}
			}
		}
		var decoded, rebuilt aggregations.Series
		buf := aggregations.AppendSeries(nil, &s)
		if rest, err := aggregations.DecodeSeries(buf, &decoded); err != nil || len(rest) != 0 {
			t.Fatalf("trial %d: DecodeSeries: %v, rest %x", trial, err, rest)
		}
		if again := aggregations.AppendSeries(nil, &decoded); string(again) != string(buf) {
			t.Fatalf("trial %d: re-encoding differs", trial)
		}
		for _, tile := range s.Tiles {
			got, rest, err := aggregations.DecodeTile(aggregations.AppendTile(nil, tile))
			if err != nil || len(rest) != 0 {
				t.Fatalf("trial %d: DecodeTile: %v, rest %x", trial, err, rest)
			}
			rebuilt.SetTile(got)
		}
		if base, ok := s.Tile(aggregations.BaseStart); ok {
			rebuilt.SetTile(base)
		}
		for _, T := range queryTimes(rng, w, events, maxNow) {
			reads++
			checkStringRead(t, &s, w, k, events, T, "online")
			checkStringRead(t, &decoded, w, k, events, T, "decoded")
			checkStringRead(t, &rebuilt, w, k, events, T, "rebuilt")
		}
	}
	if reads < 5000 || pendingStrings == 0 {
		t.Errorf("reads %d, pending strings encoded %d: the test did not reach every situation", reads, pendingStrings)
	}
}

// TestStringsTilesMergeInEveryOrder merges the tiles of a random string
// series in every order and checks each result against the brute force.
func TestStringsTilesMergeInEveryOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	orders := 0
	for trial := range 400 {
		w, k := randStringWindow(rng)
		events := randStringEvents(rng, 1+rng.IntN(40))
		var s aggregations.Series
		for _, e := range events {
			s.Apply(w, e, aggregations.NoClock)
		}
		if len(s.Tiles) > 5 {
			s.Tiles = s.Tiles[:5]
		}
		var kept []ev
		for _, e := range events {
			for _, tile := range s.Tiles {
				if w.TileStart(e.TS) == tile.Start {
					kept = append(kept, e)
				}
			}
		}
		life := aggregations.Window{Hop: 1}.For(k, 0).WithK(w.K())
		permute(len(s.Tiles), func(order []int) {
			orders++
			var ir aggregations.IR
			for _, i := range order {
				ir.Merge(s.Tiles[i].IR)
			}
			if k == aggregations.TopK {
				if msg := stringTopKMismatch(ir, life, kept, math.MaxInt64); msg != "" {
					t.Fatalf("trial %d order %v: %s", trial, order, msg)
				}
				return
			}
			if k.List() {
				got, ok := aggregations.FinalizeStringList(k, ir)
				want, wantOK := aggtest.BruteForceStringList(k, life, kept, math.MaxInt64)
				if ok != wantOK || !slices.Equal(got, want) {
					t.Fatalf("trial %d order %v: %v = %q, %v; brute force %q, %v", trial, order, k, got, ok, want, wantOK)
				}
				return
			}
			got, ok := aggregations.FinalizeString(k, ir)
			want, wantOK := aggtest.BruteForceString(k, life, kept, math.MaxInt64)
			if ok != wantOK || got != want {
				t.Fatalf("trial %d order %v: %v = %q, %v; brute force %q, %v", trial, order, k, got, ok, want, wantOK)
			}
		})
	}
	if orders < 2000 {
		t.Errorf("only %d orders", orders)
	}
}

// TestStringsTieBrokenByString: two events with the same time and sequence
// (the same record seen twice with different strings cannot happen, but
// merges must not depend on their order) give the same last and first
// whichever IR receives the other.
func TestStringsTieBrokenByString(t *testing.T) {
	w := aggregations.Window{Hop: 1}.For(aggregations.Last, 0).WithStrings()
	fold := func(e ev) aggregations.IR {
		var s aggregations.Series
		s.Apply(w, e, aggregations.NoClock)
		return s.Read(w, math.MaxInt64)
	}
	a, b := fold(ev{TS: 5, Seq: 1, Str: "atm"}), fold(ev{TS: 5, Seq: 1, Str: "fuel"})
	ab, ba := a.Clone(), b.Clone()
	ab.Merge(b)
	ba.Merge(a)
	for _, ir := range []aggregations.IR{ab, ba} {
		if v, _ := aggregations.FinalizeString(aggregations.Last, ir); v != "fuel" {
			t.Errorf("last = %q, want fuel (the larger string)", v)
		}
		if v, _ := aggregations.FinalizeString(aggregations.First, ir); v != "atm" {
			t.Errorf("first = %q, want atm (the smaller string)", v)
		}
	}
}

// TestStringsNumberFeaturesUnchanged: a window without WithStrings ignores
// Event.Str (its tiles encode to the same bytes as without strings, and
// FinalizeString gives null), so number features keep their encoding.
func TestStringsNumberFeaturesUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	for trial := range 500 {
		w := randWindow(rng)
		events := randStringEvents(rng, rng.IntN(30))
		var with, without aggregations.Series
		for _, e := range events {
			with.Apply(w, e, aggregations.NoClock)
			e.Str = ""
			without.Apply(w, e, aggregations.NoClock)
		}
		if a, b := aggregations.AppendSeries(nil, &with), aggregations.AppendSeries(nil, &without); string(a) != string(b) {
			t.Fatalf("trial %d: strings changed a number series' encoding", trial)
		}
		if _, ok := aggregations.FinalizeString(aggregations.Last, with.Read(w, math.MaxInt64)); ok {
			t.Fatalf("trial %d: FinalizeString of a number IR is not null", trial)
		}
	}
}

// TestStringsDecodeRejectsTruncation: every strict prefix of an encoded
// string series fails to decode with ErrCorrupt-wrapped errors, never panics.
func TestStringsDecodeRejectsTruncation(t *testing.T) {
	w := aggregations.Window{Size: 10, Hop: 5}.For(aggregations.LastK, 0).WithK(3).WithStrings()
	var s aggregations.Series
	for i, str := range []string{"grocery", "atm", "fuel", "travel"} {
		s.Apply(w, ev{TS: int64(i * 3), Seq: int64(i), Str: str}, 4) // some pending
	}
	buf := aggregations.AppendSeries(nil, &s)
	for n := range len(buf) {
		var d aggregations.Series
		if _, err := aggregations.DecodeSeries(buf[:n], &d); !errors.Is(err, aggregations.ErrCorrupt) {
			t.Fatalf("prefix of %d of %d bytes: err %v, want ErrCorrupt", n, len(buf), err)
		}
	}
}
