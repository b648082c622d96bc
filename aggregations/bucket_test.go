package aggregations_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

// bucketKeys are the bucket keys the property tests draw from: "" and
// OtherBucket itself are buckets like any other.
var bucketKeys = []string{"atm", "grocery", "fuel", "travel", "", aggregations.OtherBucket, "b", "a"}

// randBucketEvents is randEvents with a bucket drawn from the first n keys.
func randBucketEvents(rng *rand.Rand, count, n int) []ev {
	events := randEvents(rng, count)
	for i := range events {
		events[i].Bucket = bucketKeys[rng.IntN(n)]
	}
	return events
}

// checkBucketRead compares the bucketed value of ir (the read of a window
// made from w WithBuckets, as of T) with the brute force, for every kind w
// can answer: the same buckets, and each bucket's value equal to the brute
// force over that bucket's events.
func checkBucketRead(t *testing.T, ir aggregations.IR, w aggregations.Window, events []ev, T int64, maxBuckets int, what string) bool {
	t.Helper()
	got := aggregations.FinalizeBuckets(ir, maxBuckets)
	want := aggtest.BucketGroups(w, events, T, maxBuckets)
	keys := make([]string, 0, len(got))
	for _, b := range got {
		keys = append(keys, b.Key)
	}
	var wantKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("%s: window %v T=%d max %d: buckets %q, brute force %q\nevents %v", what, w, T, maxBuckets, keys, wantKeys, events)
		return false
	}
	for _, b := range got {
		group := want[b.Key]
		for _, k := range kindsOf(w) {
			if k.List() {
				l, ok := aggregations.FinalizeList(k, b.IR)
				wl, wok := aggtest.BruteForceList(k, w, group, T)
				if ok != wok || !slices.Equal(l, wl) {
					t.Errorf("%s: window %v T=%d bucket %q %v = %v, %v; brute force %v, %v", what, w, T, b.Key, k, l, ok, wl, wok)
					return false
				}
				continue
			}
			v, ok := aggregations.Finalize(k, b.IR)
			wv, wok := aggtest.BruteForce(k, w, group, T)
			if ok != wok || (ok && !aggtest.Within(k, v, wv)) {
				t.Errorf("%s: window %v T=%d bucket %q %v = %v, %v; brute force %v, %v\ngroup %v", what, w, T, b.Key, k, v, ok, wv, wok, group)
				return false
			}
		}
	}
	return true
}

// TestBucketsOnlineAndReplayMatchBruteForce applies random bucketed events
// online (random clocks: pending, dropped, lifetime Base) and as a replay
// (NoClock, reads between batches), and checks every read against the
// brute force per bucket for every kind, with max_buckets from 1 (most
// buckets fold into __other__) to more than there are buckets. It also
// checks that the bucketed IR's exact fields are those of the unbucketed
// feature, and that the encoded series decodes to the same reads.
func TestBucketsOnlineAndReplayMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var reads, empty, folded, pending int
	for trial := range 2500 {
		base := randWindow(rng)
		w := base.WithBuckets()
		maxBuckets := 1 + rng.IntN(5)
		events := randBucketEvents(rng, rng.IntN(40), 1+rng.IntN(len(bucketKeys)))
		var s, plain aggregations.Series
		maxNow := int64(math.MinInt64)
		replay := trial%2 == 1
		if replay {
			byTime := slices.Clone(events)
			slices.SortFunc(byTime, func(a, b ev) int { return int(a.TS - b.TS) })
			next := 0
			for _, T := range queryTimes(rng, base, events, math.MinInt64) {
				end := next
				for end < len(byTime) && byTime[end].TS < T {
					end++
				}
				batch := byTime[next:end]
				rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				for _, e := range batch {
					s.Apply(w, e, aggregations.NoClock)
				}
				next = end
				reads++
				if !checkBucketRead(t, s.Read(w, T), base, events, T, maxBuckets, "replay") {
					t.Fatalf("trial %d", trial)
				}
			}
			continue
		}
		now := randClock(rng, base, events)
		for _, e := range events {
			now = randClock(rng, base, events)
			maxNow = max(maxNow, now)
			s.Apply(w, e, now)
			plain.Apply(base, e, now)
			if rng.IntN(4) == 0 {
				s.Expire(w, now, nil)
				plain.Expire(base, now, nil)
			}
		}
		var dec aggregations.Series
		if _, err := aggregations.DecodeSeries(aggregations.AppendSeries(nil, &s), &dec); err != nil {
			t.Fatalf("trial %d: decode: %v", trial, err)
		}
		for _, T := range queryTimes(rng, base, events, maxNow) {
			reads++
			ir := s.Read(w, T)
			if ir.Empty() {
				empty++
			}
			if ir.BucketCount() > maxBuckets {
				folded++
			}
			if pendingIn(&s, w, T) {
				pending++
			}
			if !checkBucketRead(t, ir, base, events, T, maxBuckets, "online") ||
				!checkBucketRead(t, dec.Read(w, T), base, events, T, maxBuckets, "decoded") {
				t.Fatalf("trial %d", trial)
			}
			p := plain.Read(base, T)
			for _, k := range []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Min, aggregations.Max, aggregations.Last, aggregations.First} {
				v, ok := aggregations.Finalize(k, ir)
				pv, pok := aggregations.Finalize(k, p)
				if v != pv || ok != pok {
					t.Fatalf("trial %d T=%d: bucketed IR's %v = %v, unbucketed %v", trial, T, k, v, pv)
				}
			}
		}
	}
	t.Logf("reads %d, empty %d, folded %d, pending %d", reads, empty, folded, pending)
	if reads < 5000 || empty == 0 || folded == 0 || pending == 0 {
		t.Errorf("did not reach every situation: reads %d, empty %d, folded %d, pending %d", reads, empty, folded, pending)
	}
}

// TestBucketsTilesMergeInEveryOrder merges up to five bucketed tiles in
// every order: each order's buckets equal the brute force over the kept
// events, for every kind the window answers.
func TestBucketsTilesMergeInEveryOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	orders := 0
	for trial := range 100 {
		base := randWindow(rng)
		w := base.WithBuckets()
		events := randBucketEvents(rng, 1+rng.IntN(40), 1+rng.IntN(len(bucketKeys)))
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
		maxBuckets := 1 + rng.IntN(4)
		all := base
		all.Size = 0 // the brute force over every kept event
		permute(len(s.Tiles), func(order []int) {
			orders++
			var ir aggregations.IR
			for _, i := range order {
				ir.Merge(s.Tiles[i].IR)
			}
			if !checkBucketRead(t, ir, all, kept, math.MaxInt64, maxBuckets, fmt.Sprintf("order %v", order)) {
				t.Fatalf("trial %d", trial)
			}
		})
	}
	if orders < 1000 {
		t.Errorf("only %d orders", orders)
	}
}

// TestBucketsTileBound checks what happens beyond BucketsMax buckets: a tile
// folds the events of further buckets into __other__, a lifetime Base folds
// its least-populated buckets when Expire merges tiles into it, every event
// is still counted, and both still encode and decode.
func TestBucketsTileBound(t *testing.T) {
	w := aggregations.Window{Size: 0, Hop: 10}.For(aggregations.Sum, 0).WithBuckets()
	var s aggregations.Series
	n := aggregations.BucketsMax + 50
	for i := range n {
		// Tile 0: buckets 0..n-1, one event each; bucket 0 gets one more.
		s.Apply(w, ev{TS: 1, Seq: int64(i), Value: 1, Bucket: fmt.Sprintf("k%05d", i)}, aggregations.NoClock)
	}
	s.Apply(w, ev{TS: 2, Seq: -1, Value: 1, Bucket: "k00000"}, aggregations.NoClock)
	// Tile 10: the 60 last buckets, 3 events each (more than most of tile 0's).
	for i := n - 60; i < n; i++ {
		for j := range 3 {
			s.Apply(w, ev{TS: 11, Seq: int64(10*i + j), Value: 2, Bucket: fmt.Sprintf("k%05d", i)}, aggregations.NoClock)
		}
	}
	tile0 := s.Tiles[0].IR
	if got := tile0.BucketCount(); got != aggregations.BucketsMax+1 {
		t.Fatalf("tile 0 keeps %d buckets, want %d and %s", got, aggregations.BucketsMax, aggregations.OtherBucket)
	}
	all := aggregations.FinalizeBuckets(tile0, aggregations.BucketsMax)
	other := all[slices.IndexFunc(all, func(b aggregations.Bucket) bool { return b.Key == aggregations.OtherBucket })]
	if other.IR.Count != 50 {
		t.Errorf("tile 0's %s holds %d events, want the 50 of the buckets beyond the bound", aggregations.OtherBucket, other.IR.Count)
	}
	// Expire merges both tiles into Base, which folds to BucketsMax.
	s.Expire(w, 1000, nil)
	if len(s.Tiles) != 0 {
		t.Fatalf("tiles left: %d", len(s.Tiles))
	}
	if got := s.Base.BucketCount(); got != aggregations.BucketsMax+1 {
		t.Fatalf("base keeps %d buckets, want %d and %s", got, aggregations.BucketsMax, aggregations.OtherBucket)
	}
	ir := s.Read(w, 2000)
	wantCount := int64(n + 1 + 60*3)
	if ir.Count != wantCount {
		t.Errorf("count %d, want %d", ir.Count, wantCount)
	}
	var sum float64
	top := aggregations.FinalizeBuckets(ir, 10)
	for _, b := range top {
		sum += b.IR.Sum
	}
	if sum != float64(n+1+60*3*2) || len(top) != 11 {
		t.Errorf("top 10 and %s: %d buckets summing to %v, want 11 summing to %d", aggregations.OtherBucket, len(top), sum, n+1+60*6)
	}
	// Tile 10's 60 buckets k00990..k01049 have 3 events there; k00990..k00999
	// also had one in tile 0 (4 in all), k01000..k01049 had theirs folded
	// into tile 0's __other__ (3 left under their key), k00000 has 2: the top
	// 10 are k00990..k00999.
	var keys []string
	for _, b := range top {
		keys = append(keys, b.Key)
	}
	wantKeys := []string{"__other__", "k00990", "k00991", "k00992", "k00993", "k00994", "k00995", "k00996", "k00997", "k00998", "k00999"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys %q, want %q...", keys, wantKeys)
	}
	var dec aggregations.Series
	if _, err := aggregations.DecodeSeries(aggregations.AppendSeries(nil, &s), &dec); err != nil {
		t.Fatal(err)
	}
	if got := dec.Read(w, 2000); irBytes(got) != irBytes(ir) {
		t.Error("decoded base reads differently")
	}
}

// TestBucketsEmptyAndUnbucketed checks the edges: an empty window and an
// IR without buckets finalize to nil; a window without WithBuckets ignores
// Event.Bucket and encodes as before.
func TestBucketsEmptyAndUnbucketed(t *testing.T) {
	w := aggregations.Window{Size: 10, Hop: 5}
	var s, b aggregations.Series
	for i, key := range []string{"x", "y", "x"} {
		s.Apply(w, ev{TS: int64(i), Seq: int64(i), Value: 1, Bucket: key}, aggregations.NoClock)
		b.Apply(w.WithBuckets(), ev{TS: int64(i), Seq: int64(i), Value: 1, Bucket: key}, aggregations.NoClock)
	}
	if got := aggregations.FinalizeBuckets(s.Read(w, 100), 10); got != nil {
		t.Errorf("unbucketed IR: %v", got)
	}
	if got := aggregations.FinalizeBuckets(b.Read(w.WithBuckets(), 100), 10); got != nil {
		t.Errorf("empty window: %v", got)
	}
	var plain aggregations.Series
	for i := range 3 {
		plain.Apply(w, ev{TS: int64(i), Seq: int64(i), Value: 1}, aggregations.NoClock)
	}
	if string(aggregations.AppendSeries(nil, &s)) != string(aggregations.AppendSeries(nil, &plain)) {
		t.Error("an unbucketed window's encoding depends on Event.Bucket")
	}
	got := aggregations.FinalizeBuckets(b.Read(w.WithBuckets(), 3), 0)
	if len(got) != 2 || got[0].Key != "x" || got[0].IR.Count != 2 || got[1].Key != "y" || got[1].IR.Count != 1 {
		t.Errorf("buckets %+v", got)
	}
}

// TestBucketsDecodeRejectsCorruption truncates and flips bytes of a bucketed
// series: every truncation is an error, and no flip panics.
func TestBucketsDecodeRejectsCorruption(t *testing.T) {
	w := aggregations.Window{Size: 20, Hop: 5}.For(aggregations.LastK, 0).WithK(3).WithBuckets()
	var s aggregations.Series
	for i := range 12 {
		s.Apply(w, ev{TS: int64(i), Seq: int64(i), Value: float64(i), Bucket: bucketKeys[i%4]}, 8)
	}
	enc := aggregations.AppendSeries(nil, &s)
	for n := range len(enc) {
		var d aggregations.Series
		if _, err := aggregations.DecodeSeries(enc[:n], &d); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(enc))
		}
	}
	for i := range enc {
		c := slices.Clone(enc)
		c[i] ^= 0x5A
		var d aggregations.Series
		_, _ = aggregations.DecodeSeries(c, &d)
	}
	var d aggregations.Series
	if _, err := aggregations.DecodeSeries(enc, &d); err != nil {
		t.Fatal(err)
	}
	if string(aggregations.AppendSeries(nil, &d)) != string(enc) {
		t.Error("re-encoding differs")
	}
}

// budgetCase is a heavy bucketed kind and a stream of events whose tile,
// without the budget, would encode past it (for the string kinds, past
// 1 MiB).
type budgetCase struct {
	name   string
	w      aggregations.Window
	events func(rng *rand.Rand) []ev
}

// longStr is a distinct string of 250 bytes (valid strings are at most 256).
func longStr(i int) string { return fmt.Sprintf("%0250d", i) }

func budgetCases() []budgetCase {
	day := aggregations.Day
	w := aggregations.Window{Size: 7 * day, Hop: day}
	gen := func(buckets, perBucket int, ev1 func(rng *rand.Rand, b, i int) ev) func(rng *rand.Rand) []ev {
		return func(rng *rand.Rand) []ev {
			var evs []ev
			for i := range perBucket { // buckets interleaved, as real traffic is
				for b := range buckets {
					e := ev1(rng, b, i)
					e.TS, e.Seq = int64(rng.IntN(int(day))), int64(len(evs))
					if e.Bucket == "" {
						e.Bucket = fmt.Sprintf("bucket-%03d", b)
					}
					evs = append(evs, e)
				}
			}
			return evs
		}
	}
	return []budgetCase{
		{"top_k of strings", w.For(aggregations.TopK, 0).WithK(10).WithStrings().WithBuckets(),
			gen(30, 200, func(rng *rand.Rand, b, i int) ev { return ev{Str: longStr(i)} })},
		{"last_k of strings", w.For(aggregations.LastK, 0).WithK(aggregations.MaxK).WithStrings().WithBuckets(),
			gen(6, 1000, func(rng *rand.Rand, b, i int) ev { return ev{Str: longStr(i)} })},
		{"first_k of numbers", w.For(aggregations.FirstK, 0).WithK(aggregations.MaxK).WithBuckets(),
			gen(60, 1000, func(rng *rand.Rand, b, i int) ev { return ev{Value: float64(i)} })},
		{"top_k of numbers", w.For(aggregations.TopK, 0).WithK(5).WithBuckets(),
			gen(60, 1000, func(rng *rand.Rand, b, i int) ev { return ev{Value: float64(i) + 0.5} })},
		{"approx_distinct", w.For(aggregations.ApproxDistinct, 0).WithBuckets(),
			gen(135, 1400, func(rng *rand.Rand, b, i int) ev { return ev{Value: rng.Float64()} })},
		{"approx_percentile", w.For(aggregations.ApproxPercentile, 0.9).WithBuckets(),
			gen(100, 2600, func(rng *rand.Rand, b, i int) ev {
				return ev{Value: math.Exp(1400*rng.Float64()-700) * float64(1-2*rng.IntN(2))}
			})},
		{"last of strings, long keys", w.For(aggregations.Last, 0).WithStrings().WithBuckets(),
			gen(900, 2, func(rng *rand.Rand, b, i int) ev {
				return ev{Str: longStr(b*2 + i), Bucket: fmt.Sprintf("%0200d", b)}
			})},
	}
}

// TestTileBudgetHeavyKinds applies, for each kind whose buckets can grow
// large, a stream that would make one tile encode past TileBytesBudget
// (past 1 MiB, Kafka's default message size and so one feature-log
// record, for the string kinds) into a tile and into a lifetime Base: both
// stay within TileBytesBudget plus one check's growth, still count every event (in named buckets or
// OtherBucket), fold at the same events when the series is encoded and
// decoded midway (a worker restarting on its state), and decode.
func TestTileBudgetHeavyKinds(t *testing.T) {
	const bound = aggregations.TileBytesBudget + 64<<10
	for _, c := range budgetCases() {
		t.Run(c.name, func(t *testing.T) {
			evs := c.events(rand.New(rand.NewPCG(1, 2)))
			var s, restarted aggregations.Series
			for i, e := range evs {
				s.Apply(c.w, e, aggregations.NoClock)
				restarted.Apply(c.w, e, aggregations.NoClock)
				if i%7919 == 0 {
					var dec aggregations.Series
					if _, err := aggregations.DecodeSeries(aggregations.AppendSeries(nil, &restarted), &dec); err != nil {
						t.Fatal(err)
					}
					restarted = dec
				}
				if i%5000 == 0 || i == len(evs)-1 {
					if n := len(aggregations.AppendTile(nil, s.Tiles[0])); n > bound {
						t.Fatalf("after %d events the tile encodes to %d bytes, more than %d", i+1, n, bound)
					}
				}
			}
			if len(s.Tiles) != 1 {
				t.Fatalf("%d tiles, want 1", len(s.Tiles))
			}
			tile := s.Tiles[0]
			if string(aggregations.AppendTile(nil, tile)) != string(aggregations.AppendTile(nil, restarted.Tiles[0])) {
				t.Error("a series encoded and decoded every 7919 events folded differently")
			}
			checkFolded(t, tile.IR, int64(len(evs)), "tile")

			// A lifetime Base that takes two tiles of half the events each
			// (within the budget, or folded to it) stays within the budget.
			lw := c.w
			lw.Size = 0
			var life aggregations.Series
			for i, e := range evs { // half of them in the next tile
				e.TS += int64(i%2) * lw.Hop
				life.Apply(lw, e, aggregations.NoClock)
			}
			life.Expire(lw, 10*lw.Hop, nil)
			if len(life.Tiles) != 0 {
				t.Fatalf("%d tiles left after Expire", len(life.Tiles))
			}
			base, _ := life.Tile(aggregations.BaseStart)
			if n := len(aggregations.AppendTile(nil, base)); n > bound {
				t.Fatalf("Base encodes to %d bytes, more than %d", n, bound)
			}
			checkFolded(t, base.IR, int64(len(evs)), "Base")
		})
	}
}

// checkFolded checks that ir counts n events over its buckets, OtherBucket
// among them, and round-trips through its encoding.
func checkFolded(t *testing.T, ir aggregations.IR, n int64, what string) {
	t.Helper()
	all := aggregations.FinalizeBuckets(ir, aggregations.BucketsMax)
	var total int64
	hasOther := false
	for _, b := range all {
		total += b.IR.Count
		hasOther = hasOther || b.Key == aggregations.OtherBucket
	}
	if ir.Count != n || total != n {
		t.Errorf("%s counts %d events, its buckets %d, want %d", what, ir.Count, total, n)
	}
	if !hasOther || len(all) < 2 {
		t.Errorf("%s: %d buckets, want named ones and %s", what, len(all), aggregations.OtherBucket)
	}
	enc := aggregations.AppendTile(nil, aggregations.Tile{IR: ir})
	dec, _, err := aggregations.DecodeTile(enc)
	if err != nil || string(aggregations.AppendTile(nil, dec)) != string(enc) {
		t.Errorf("%s does not round-trip: %v", what, err)
	}
}

// TestTileBudgetKeepsWhatFits checks that the budget changes nothing below
// it: a last_k of 250-byte strings whose tile encodes to ~340 KB keeps
// every bucket, exact against the brute force.
func TestTileBudgetKeepsWhatFits(t *testing.T) {
	w := aggregations.Window{Size: 7 * aggregations.Day, Hop: aggregations.Day}.For(aggregations.LastK, 0).WithK(aggregations.MaxK).WithStrings().WithBuckets()
	var evs []ev
	for i := range 1300 {
		evs = append(evs, ev{TS: int64(i), Seq: int64(i), Str: longStr(i), Bucket: []string{"a", "a", "a", "b"}[i%4]})
	}
	var s aggregations.Series
	for _, e := range evs {
		s.Apply(w, e, aggregations.NoClock)
	}
	n := len(aggregations.AppendTile(nil, s.Tiles[0]))
	if n < 300<<10 || n > aggregations.TileBytesBudget {
		t.Fatalf("tile of %d bytes, want between 300 KiB and the budget", n)
	}
	got := aggregations.FinalizeBuckets(s.Read(w, aggregations.Day), 10)
	if len(got) != 2 || got[0].Key != "a" || got[1].Key != "b" {
		t.Fatalf("buckets %v, want a and b", got)
	}
	want := aggtest.BucketGroups(w, evs, aggregations.Day, 10)
	for _, b := range got {
		l, _ := aggregations.FinalizeStringList(aggregations.LastK, b.IR)
		wl, _ := aggtest.BruteForceStringList(aggregations.LastK, w, want[b.Key], aggregations.Day)
		if !slices.Equal(l, wl) {
			t.Errorf("bucket %s: %d strings, brute force %d", b.Key, len(l), len(wl))
		}
	}
}
