package aggregations_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
)

func TestSeqOrdersByPartitionThenOffset(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p1         int32
		o1         int64
		p2         int32
		o2         int64
		firstLater bool
	}{
		{"later offset in the same partition wins", 3, 11, 3, 10, true},
		{"higher partition wins whatever the offsets", 2, 0, 1, 1 << 40, true},
		{"lower partition loses", 0, 999, 1, 0, false},
		{"largest exact offset in the highest exact partition", 1<<19 - 1, 1<<44 - 1, 1<<19 - 1, 1<<44 - 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := aggregations.Seq(tc.p1, tc.o1), aggregations.Seq(tc.p2, tc.o2)
			if (a > b) != tc.firstLater || a == b {
				t.Fatalf("Seq(%d,%d)=%d vs Seq(%d,%d)=%d: first later %v, want %v", tc.p1, tc.o1, a, tc.p2, tc.o2, b, a > b, tc.firstLater)
			}
		})
	}
	if aggregations.Seq(0, 12345) != 12345 {
		t.Fatal("partition 0: Seq must be the offset itself (state written before partitions counted stays comparable)")
	}
	if aggregations.Seq(1<<19-1, 1<<44-1) <= 0 {
		t.Fatal("Seq of valid partitions and exact offsets must stay positive")
	}
}

// TestPropertyPartitionedSeriesMergeToTheWhole splits random events of one
// entity over several source partitions (as producers with different
// partitioners do), keeps one Series per partition as the workers do, and
// checks that merging the partitions' reads equals the brute force over all
// events, for every kind: last by latest event time, then higher partition,
// then later offset (computed here from (partition, offset), independently
// of Seq's bit layout).
func TestPropertyPartitionedSeriesMergeToTheWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	kinds := []aggregations.Kind{aggregations.Count, aggregations.Sum, aggregations.Avg, aggregations.Min, aggregations.Max, aggregations.Last}
	type rec struct {
		e         ev
		partition int32
		offset    int64
	}
	for trial := range 2000 {
		w := randWindow(rng)
		nparts := 1 + rng.IntN(4)
		events := randEvents(rng, rng.IntN(40))
		offsets := make([]int64, nparts)
		recs := make([]rec, len(events))
		all := make([]ev, len(events))
		series := make([]aggregations.Series, nparts)
		now := int64(math.MinInt64)
		for _, e := range events {
			now = max(now, e.TS+1)
		}
		for i, e := range events {
			p := int32(rng.IntN(nparts))
			r := rec{e: e, partition: p, offset: offsets[p]}
			offsets[p] += 1 + int64(rng.IntN(3))
			r.e.Seq = aggregations.Seq(p, r.offset)
			recs[i], all[i] = r, r.e
			series[p].Apply(w, r.e, now)
		}
		for _, T := range queryTimes(rng, w, all, now) {
			var ir aggregations.IR
			for p := range series {
				ir.Merge(series[p].Read(w, T))
			}
			for _, k := range kinds {
				got, ok := aggregations.Finalize(k, ir)
				want, wantOK := aggtest.BruteForce(k, w, all, T)
				if k == aggregations.Last {
					// The rule by definition: latest ts, then higher
					// partition, then later offset.
					var best *rec
					for i := range recs {
						r := &recs[i]
						if r.e.TS >= T || (!w.Lifetime() && r.e.TS < w.Start(T)) {
							continue
						}
						if best == nil || r.e.TS > best.e.TS || (r.e.TS == best.e.TS &&
							(r.partition > best.partition || (r.partition == best.partition && r.offset > best.offset))) {
							best = r
						}
					}
					want, wantOK = 0, best != nil
					if best != nil {
						want = best.e.Value
					}
				}
				if ok != wantOK || (ok && !aggtest.Close(got, want)) {
					t.Fatalf("trial %d, %d partitions, %s %v at T=%d: merged %v (%v), want %v (%v)", trial, nparts, k, w, T, got, ok, want, wantOK)
				}
			}
		}
	}
}
