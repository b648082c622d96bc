package aggregations_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

// The property tests use small times (around -100..250 ms) and small hops so that
// random events share tiles and timestamps, cross zero (negative floors) and fall
// on window and tile boundaries often.

func randWindow(rng *rand.Rand) aggregations.Window {
	hop := []int64{1, 2, 3, 5, 7, 10, 16}[rng.IntN(7)]
	w := aggregations.Window{Size: 0, Hop: hop}
	if rng.IntN(5) != 0 {
		w.Size = hop * int64(1+rng.IntN(6))
	}
	// A fifth of the windows keep each sketch or list, as those features'
	// windows do.
	switch rng.IntN(6) {
	case 5:
		w = w.For(aggregations.TopK, 0).WithK([]int{1, 2, 3, 5, 1000}[rng.IntN(5)])
	case 3:
		w = w.For(aggregations.FirstK, 0).WithK([]int{1, 2, 3, 5, 1000}[rng.IntN(5)])
	case 4:
		w = w.For(aggregations.LastK, 0).WithK([]int{1, 2, 3, 5, 1000}[rng.IntN(5)])
	case 1:
		w = w.For(aggregations.ApproxDistinct, 0)
	case 2:
		w = w.For(aggregations.ApproxPercentile, []float64{0.5, 0.95, 0.99, 0.01 + 0.98*rng.Float64()}[rng.IntN(4)])
	}
	return w
}

// kindsOf returns the kinds a series tiled with w can answer: every exact kind,
// and the approximate kind whose sketch w keeps.
func kindsOf(w aggregations.Window) []aggregations.Kind {
	var ks []aggregations.Kind
	for _, k := range aggregations.Kinds() {
		if (!k.Approximate() && !k.List()) || w == w.For(k, w.Percentile()).WithK(w.K()) {
			ks = append(ks, k)
		}
	}
	return ks
}

// irBytes is the canonical encoding of ir: equal bytes, equal IRs (sketches
// included, and -0 told from 0).
func irBytes(ir aggregations.IR) string {
	return string(aggregations.AppendTile(nil, aggregations.Tile{IR: ir}))
}

// randEvents returns n events with out-of-order times drawn from a small range
// (so that timestamps repeat), unique sequence numbers in random order, and values
// that are multiples of 1/4 (so that sums are exact in any order).
func randEvents(rng *rand.Rand, n int) []ev {
	lo, span := int64(-60-rng.IntN(40)), int64(20+rng.IntN(200))
	seqs := rng.Perm(n)
	events := make([]ev, n)
	for i := range events {
		events[i] = ev{
			TS:    lo + rng.Int64N(span),
			Seq:   int64(seqs[i])*7 + 1000,
			Value: float64(rng.IntN(81)-40) / 4,
		}
	}
	return events
}

// queryTimes returns read times around the events: random ones, tile boundaries,
// event times and the instants just after them, and times before all events.
func queryTimes(rng *rand.Rand, w aggregations.Window, events []ev, from int64) []int64 {
	var ts []int64
	add := func(t int64) {
		if t >= from {
			ts = append(ts, t)
		}
	}
	add(from)
	for range 4 {
		add(from + int64(rng.IntN(100)))
		add(int64(rng.IntN(400) - 150))
	}
	if len(events) > 0 {
		e := events[rng.IntN(len(events))]
		add(e.TS)
		add(e.TS + 1)
		add(w.TileStart(e.TS))
		add(w.TileStart(e.TS) + w.Size)
		add(w.TileStart(e.TS) + w.Size + 1)
		first := slices.MinFunc(events, func(a, b ev) int { return int(a.TS - b.TS) }).TS
		add(first)
		add(first - int64(rng.IntN(20)))
	}
	slices.Sort(ts)
	return ts
}

// randClock returns a worker clock near the events: before, among or after them.
func randClock(rng *rand.Rand, w aggregations.Window, events []ev) int64 {
	lo, hi := int64(-100), int64(150)
	if len(events) > 0 {
		lo, hi = events[0].TS, events[0].TS
		for _, e := range events {
			lo, hi = min(lo, e.TS), max(hi, e.TS)
		}
	}
	return lo - 2*w.Hop + rng.Int64N(hi-lo+3*w.Hop+1)
}

// coverage counts the situations a property test must reach to mean something.
type coverage struct {
	reads, emptyWindows, pendingReads, dropped, baseUsed int
}

// read counts a read of s at T, and whether its window is empty or holds
// pending events.
func (c *coverage) read(s *aggregations.Series, w aggregations.Window, T int64) {
	c.reads++
	if s.Read(w, T).Empty() {
		c.emptyWindows++
	}
	if pendingIn(s, w, T) {
		c.pendingReads++
	}
}

func (c coverage) check(t *testing.T) {
	t.Helper()
	t.Logf("coverage: %+v", c)
	if c.reads < 1000 || c.emptyWindows == 0 || c.pendingReads == 0 || c.dropped == 0 || c.baseUsed == 0 {
		t.Errorf("property test did not reach every situation: %+v", c)
	}
}

func checkRead(t *testing.T, s *aggregations.Series, w aggregations.Window, events []ev, T int64, what string) bool {
	t.Helper()
	ir := s.Read(w, T)
	for _, k := range kindsOf(w) {
		if k == aggregations.TopK {
			if !checkTopK(t, ir, w, events, T) {
				t.Errorf("%s: window %v k=%d, T=%d\nevents %v\nseries %+v", what, w, w.K(), T, events, *s)
				return false
			}
			continue
		}
		if k.List() {
			got, ok := aggregations.FinalizeList(k, ir)
			want, wantOK := aggtest.BruteForceList(k, w, events, T)
			if ok != wantOK || !slices.Equal(got, want) {
				t.Errorf("%s: window %v k=%d, T=%d, %v = %v, %v; brute force %v, %v\nevents %v\nseries %+v",
					what, w, w.K(), T, k, got, ok, want, wantOK, events, *s)
				return false
			}
			continue
		}
		got, ok := aggregations.Finalize(k, ir)
		want, wantOK := aggtest.BruteForce(k, w, events, T)
		if ok != wantOK || (ok && !aggtest.Within(k, got, want)) {
			t.Errorf("%s: window %v, T=%d, %v = %v, %v; brute force %v, %v\nevents %v\nseries %+v",
				what, w, T, k, got, ok, want, wantOK, events, *s)
			return false
		}
	}
	return true
}

// checkTopK compares FinalizeTopK of ir (the read of a window over a few
// distinct values: exact) with the brute force of events as of T, and the
// error with 0.
func checkTopK(t *testing.T, ir aggregations.IR, w aggregations.Window, events []ev, T int64) bool {
	t.Helper()
	got, ok := aggregations.FinalizeTopK(ir, w.K())
	typed := make([]aggtest.Typed[float64], len(events))
	for i, e := range events {
		typed[i] = aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value}
	}
	want, wantOK := aggtest.BruteForceTopK(w, typed, T, w.K())
	same := ok == wantOK && len(got) == len(want) && aggregations.TopKError(ir) == 0
	for i := 0; same && i < len(got); i++ {
		same = got[i].Value == want[i].Value && got[i].Count == want[i].Count
	}
	if !same {
		t.Errorf("top_k k=%d T=%d = %v, %v (error %d); brute force %v, %v", w.K(), T, got, ok, aggregations.TopKError(ir), want, wantOK)
	}
	return same
}

func pendingIn(s *aggregations.Series, w aggregations.Window, T int64) bool {
	for _, tile := range s.Tiles {
		if tile.Start >= w.Start(T) && tile.Start < T && len(tile.Pending) > 0 {
			return true
		}
	}
	return false
}

// TestPropertyOnlineReadMatchesBruteForce applies random events with random worker
// clocks (so some events are pending and some are dropped) and checks that every
// read at or after the latest clock equals the brute-force oracle, for every kind.
func TestPropertyOnlineReadMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cov coverage
	for trial := range 4000 {
		w := randWindow(rng)
		events := randEvents(rng, rng.IntN(40))
		var s aggregations.Series
		now, maxNow := randClock(rng, w, events), int64(math.MinInt64)
		monotonic := rng.IntN(2) == 0
		for _, e := range events {
			if monotonic {
				now += int64(rng.IntN(3))
			} else {
				now = randClock(rng, w, events)
			}
			maxNow = max(maxNow, now)
			start, applied := s.Apply(w, e, now)
			wantDrop := !w.Lifetime() && e.TS < w.Horizon(now)
			if applied == wantDrop {
				t.Fatalf("trial %d: Apply(%v, %+v, now=%d) applied=%v, want %v (horizon %d)", trial, w, e, now, applied, !wantDrop, w.Horizon(now))
			}
			if !applied {
				cov.dropped++
			}
			if start == aggregations.BaseStart {
				cov.baseUsed++
			}
		}
		// Dropped events are older than any window read at T >= maxNow, so the
		// oracle may see every event.
		for _, T := range queryTimes(rng, w, events, maxNow) {
			cov.read(&s, w, T)
			if !checkRead(t, &s, w, events, T, "online") {
				t.Fatalf("trial %d", trial)
			}
		}
	}
	cov.check(t)
}

// TestPropertyReplayReadMatchesBruteForce replays events with NoClock the way a
// backfill does: the events before each read time, in random order, then the read.
func TestPropertyReplayReadMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	reads := 0
	for trial := range 3000 {
		w := randWindow(rng)
		events := randEvents(rng, rng.IntN(40))
		byTime := slices.Clone(events)
		slices.SortFunc(byTime, func(a, b ev) int { return int(a.TS - b.TS) })
		var s aggregations.Series
		next := 0
		for _, T := range queryTimes(rng, w, events, math.MinInt64) {
			batchEnd := next
			for batchEnd < len(byTime) && byTime[batchEnd].TS < T {
				batchEnd++
			}
			batch := byTime[next:batchEnd]
			rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			for _, e := range batch {
				if _, applied := s.Apply(w, e, aggregations.NoClock); !applied {
					t.Fatalf("trial %d: replay dropped %+v", trial, e)
				}
			}
			next = batchEnd
			reads++
			if !checkRead(t, &s, w, events, T, "replay") {
				t.Fatalf("trial %d", trial)
			}
		}
		for _, tile := range s.Tiles {
			if tile.Pending != nil {
				t.Fatalf("trial %d: replay left pending events in %+v", trial, tile)
			}
		}
	}
	if reads < 1000 {
		t.Errorf("only %d reads", reads)
	}
}

// TestPropertyExpire checks that expiring at some clock changes no read at or after
// that clock: reads still equal the oracle over all events, and, for finite windows,
// the oracle over the events at or after the horizon only.
func TestPropertyExpire(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var cov coverage
	for trial := range 4000 {
		w := randWindow(rng)
		events := randEvents(rng, rng.IntN(40))
		var s aggregations.Series
		now := randClock(rng, w, events)
		for _, e := range events {
			now += int64(rng.IntN(3))
			if _, applied := s.Apply(w, e, now); !applied {
				cov.dropped++
			}
		}
		expireAt := now + int64(rng.IntN(int(w.Size+3*w.Hop)))
		before := slices.Clone(s.Tiles)
		baseBefore := irBytes(s.Base) // bytes: Expire updates Base's sketch in place
		removed, baseChanged := s.Expire(w, expireAt, nil)
		horizon := w.Horizon(expireAt)

		var wantRemoved []int64
		for _, tile := range before {
			if tile.Start < horizon {
				wantRemoved = append(wantRemoved, tile.Start)
			}
		}
		if !slices.Equal(removed, wantRemoved) {
			t.Fatalf("trial %d: Expire(%v, %d) removed %v, want %v", trial, w, expireAt, removed, wantRemoved)
		}
		for _, tile := range s.Tiles {
			if tile.Start < horizon {
				t.Fatalf("trial %d: kept tile %d below horizon %d", trial, tile.Start, horizon)
			}
		}
		if len(s.Tiles)+len(removed) != len(before) {
			t.Fatalf("trial %d: kept %d + removed %d != %d tiles", trial, len(s.Tiles), len(removed), len(before))
		}
		if w.Lifetime() {
			if baseChanged != (irBytes(s.Base) != baseBefore) {
				t.Fatalf("trial %d: baseChanged=%v but base %+v -> %+v", trial, baseChanged, baseBefore, s.Base)
			}
			if baseChanged {
				cov.baseUsed++
			}
		} else if baseChanged || !s.Base.Empty() {
			t.Fatalf("trial %d: finite window changed base", trial)
		}

		var recent []ev
		for _, e := range events {
			if e.TS >= horizon {
				recent = append(recent, e)
			}
		}
		for _, T := range queryTimes(rng, w, events, expireAt) {
			cov.read(&s, w, T)
			if !checkRead(t, &s, w, events, T, "after expire, all events") {
				t.Fatalf("trial %d", trial)
			}
			if !w.Lifetime() && !checkRead(t, &s, w, recent, T, "after expire, events at or after the horizon") {
				t.Fatalf("trial %d", trial)
			}
		}
	}
	cov.check(t)
}

// TestPropertyEncodingRoundTrip checks that encoding and decoding a series, into a
// reused series, and rebuilding it tile by tile with SetTile, preserve every read.
func TestPropertyEncodingRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var decoded aggregations.Series
	for trial := range 3000 {
		w := randWindow(rng)
		events := randEvents(rng, rng.IntN(40))
		var s aggregations.Series
		now := randClock(rng, w, events)
		for _, e := range events {
			now += int64(rng.IntN(3))
			s.Apply(w, e, now)
		}
		if rng.IntN(2) == 0 {
			s.Expire(w, now, nil)
		}
		buf := aggregations.AppendSeries([]byte{0xEE}, &s)
		rest, err := aggregations.DecodeSeries(append(buf[1:], 0xAB), &decoded)
		if err != nil {
			t.Fatalf("trial %d: DecodeSeries: %v", trial, err)
		}
		if len(rest) != 1 || rest[0] != 0xAB {
			t.Fatalf("trial %d: rest = %x, want the trailing byte", trial, rest)
		}
		if again := aggregations.AppendSeries(nil, &decoded); string(again) != string(buf[1:]) {
			t.Fatalf("trial %d: re-encoding differs", trial)
		}

		var rebuilt aggregations.Series
		published := slices.Clone(s.Tiles)
		rng.Shuffle(len(published), func(i, j int) { published[i], published[j] = published[j], published[i] })
		for _, tile := range published {
			b := aggregations.AppendTile(nil, tile)
			got, rest, err := aggregations.DecodeTile(b)
			if err != nil || len(rest) != 0 {
				t.Fatalf("trial %d: DecodeTile: %v, rest %x", trial, err, rest)
			}
			rebuilt.SetTile(got)
		}
		if base, ok := s.Tile(aggregations.BaseStart); ok {
			rebuilt.SetTile(base)
		}

		for _, T := range queryTimes(rng, w, events, now) {
			want := irBytes(s.Read(w, T))
			if got := decoded.Read(w, T); irBytes(got) != want {
				t.Fatalf("trial %d: T=%d decoded read %+v, want %+v", trial, T, got, want)
			}
			if got := rebuilt.Read(w, T); irBytes(got) != want {
				t.Fatalf("trial %d: T=%d rebuilt read %+v, want %+v", trial, T, got, want)
			}
		}
	}
}

// TestPropertyMerge checks that Merge is commutative and associative on random IRs
// (with and without sketches), that merging the IRs of two event sets equals the
// IR of their union, and that merging never changes its argument.
func TestPropertyMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	sameIR := func(a, b aggregations.IR) bool {
		if a.Count != b.Count || !aggtest.Close(a.Sum, b.Sum) || a.Min != b.Min || a.Max != b.Max ||
			a.Last != b.Last || a.LastTS != b.LastTS || a.LastSeq != b.LastSeq ||
			a.First != b.First || a.FirstTS != b.FirstTS || a.FirstSeq != b.FirstSeq ||
			!aggtest.Close(a.Mean, b.Mean) || !aggtest.Close(a.M2, b.M2) {
			return false
		}
		// The sketches merge exactly: identical estimates.
		for _, k := range []aggregations.Kind{aggregations.ApproxDistinct, aggregations.ApproxPercentile} {
			va, oka := aggregations.Finalize(k, a)
			vb, okb := aggregations.Finalize(k, b)
			if va != vb || oka != okb {
				return false
			}
		}
		for _, k := range []aggregations.Kind{aggregations.FirstK, aggregations.LastK} {
			va, oka := aggregations.FinalizeList(k, a)
			vb, okb := aggregations.FinalizeList(k, b)
			if !slices.Equal(va, vb) || oka != okb {
				return false
			}
		}
		// top_k is exact here (a few distinct values): identical counts.
		ta, oka := aggregations.FinalizeTopK(a, aggregations.TopKExactMax)
		tb, okb := aggregations.FinalizeTopK(b, aggregations.TopKExactMax)
		return slices.Equal(ta, tb) && oka == okb
	}
	for trial := range 5000 {
		w := randWindow(rng)
		randIR := func() ([]ev, aggregations.IR) {
			events := randEvents(rng, rng.IntN(6))
			for i := range events {
				events[i].Value = (rng.Float64() - 0.5) * 1e6 // inexact sums on purpose
				if rng.IntN(4) == 0 {
					events[i].Seq = int64(rng.IntN(3)) // seq ties across IRs
				}
			}
			return events, foldIR(w, events...)
		}
		ea, a := randIR()
		eb, b := randIR()
		_, c := randIR()
		aBytes, bBytes, cBytes := irBytes(a), irBytes(b), irBytes(c)

		ab, ba := a.Clone(), b.Clone()
		ab.Merge(b)
		ba.Merge(a)
		if !sameIR(ab, ba) {
			t.Fatalf("trial %d: not commutative: %+v vs %+v", trial, ab, ba)
		}
		abc1 := ab.Clone()
		abc1.Merge(c)
		bc := b.Clone()
		bc.Merge(c)
		abc2 := a.Clone()
		abc2.Merge(bc)
		if !sameIR(abc1, abc2) {
			t.Fatalf("trial %d: not associative: %+v vs %+v", trial, abc1, abc2)
		}
		if union := foldIR(w, append(slices.Clone(ea), eb...)...); !sameIR(ab, union) {
			t.Fatalf("trial %d: merge %+v != IR of the union %+v", trial, ab, union)
		}
		if irBytes(a) != aBytes || irBytes(b) != bBytes || irBytes(c) != cBytes {
			t.Fatalf("trial %d: Merge changed an IR it merged from", trial)
		}
	}
}

// TestPropertyTilesMergeInEveryOrder folds the tiles of a random series in every
// order (and as per-partition series, the way the lookup merges them) and checks
// that each order gives the same value for every kind the window answers: exactly
// for the counts, extremes, first, last and the sketches, within rounding for sums
// and variances.
func TestPropertyTilesMergeInEveryOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	orders := 0
	for trial := range 400 {
		w := randWindow(rng).For([]aggregations.Kind{aggregations.Count, aggregations.ApproxDistinct, aggregations.ApproxPercentile, aggregations.FirstK, aggregations.LastK, aggregations.TopK}[rng.IntN(6)], 0.9).WithK(1 + rng.IntN(6))
		events := randEvents(rng, 1+rng.IntN(40))
		var s aggregations.Series
		for _, e := range events {
			s.Apply(w, e, aggregations.NoClock)
		}
		if len(s.Tiles) > 5 {
			s.Tiles = s.Tiles[:5] // 120 orders at most
		}
		var kept []ev
		for _, e := range events {
			for _, tile := range s.Tiles {
				if w.TileStart(e.TS) == tile.Start {
					kept = append(kept, e)
				}
			}
		}
		var first map[aggregations.Kind]float64
		permute(len(s.Tiles), func(order []int) {
			orders++
			var ir aggregations.IR
			for _, i := range order {
				ir.Merge(s.Tiles[i].IR)
			}
			got := make(map[aggregations.Kind]float64)
			for _, k := range kindsOf(w) {
				if k == aggregations.TopK {
					// Exact (few distinct values): equal to the brute force in every order.
					if !checkTopK(t, ir, aggregations.Window{Hop: 1}.For(k, 0).WithK(w.K()), kept, math.MaxInt64) {
						t.Fatalf("trial %d order %v: top_k differs from the brute force", trial, order)
					}
					continue
				}
				if k.List() {
					l, ok := aggregations.FinalizeList(k, ir)
					want, wantOK := aggtest.BruteForceList(k, aggregations.Window{Hop: 1}.For(k, 0).WithK(w.K()), kept, math.MaxInt64)
					if ok != wantOK || !slices.Equal(l, want) {
						t.Fatalf("trial %d order %v: %v = %v, %v; brute force %v, %v", trial, order, k, l, ok, want, wantOK)
					}
					continue // equal to the brute force in every order: the same list
				}
				v, ok := aggregations.Finalize(k, ir)
				want, wantOK := aggtest.BruteForce(k, aggregations.Window{Hop: 1}.For(k, w.Percentile()), kept, math.MaxInt64)
				if ok != wantOK || (ok && !aggtest.Within(k, v, want)) {
					t.Fatalf("trial %d order %v: %v = %v, %v; brute force %v, %v", trial, order, k, v, ok, want, wantOK)
				}
				got[k] = v
			}
			if first == nil {
				first = got
				return
			}
			for k, v := range got {
				exact := k != aggregations.Sum && k != aggregations.Avg && k != aggregations.Variance && k != aggregations.Stddev &&
					k != aggregations.VarianceSamp && k != aggregations.StddevSamp
				if (exact && v != first[k]) || (!exact && !aggtest.Close(v, first[k])) {
					t.Fatalf("trial %d order %v: %v = %v, another order gave %v", trial, order, k, v, first[k])
				}
			}
		})
	}
	if orders < 2000 {
		t.Errorf("only %d orders", orders)
	}
}

// permute calls f with every permutation of 0..n-1 (Heap's algorithm).
func permute(n int, f func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var gen func(k int)
	gen = func(k int) {
		if k <= 1 {
			f(p)
			return
		}
		for i := 0; i < k; i++ {
			gen(k - 1)
			if k%2 == 0 {
				p[i], p[k-1] = p[k-1], p[i]
			} else {
				p[0], p[k-1] = p[k-1], p[0]
			}
		}
	}
	gen(n)
}

// foldIR is the IR of events under window w's sketch: the read, as of the end of
// time, of a lifetime series they were applied to.
func foldIR(w aggregations.Window, events ...ev) aggregations.IR {
	life := aggregations.Window{Size: 0, Hop: 1}.For(aggregations.Count, 0)
	if p := w.Percentile(); p > 0 {
		life = life.For(aggregations.ApproxPercentile, p)
	} else if k := w.K(); k > 0 {
		for _, kind := range []aggregations.Kind{aggregations.FirstK, aggregations.LastK, aggregations.TopK} {
			if w == w.For(kind, 0).WithK(k) {
				life = life.For(kind, 0).WithK(k)
			}
		}
	} else if w == w.For(aggregations.ApproxDistinct, 0) {
		life = life.For(aggregations.ApproxDistinct, 0)
	}
	var s aggregations.Series
	for _, e := range events {
		s.Apply(life, e, aggregations.NoClock)
	}
	return s.Read(life, math.MaxInt64)
}
