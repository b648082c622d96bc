package worker

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
)

// fetchOf is one poll of one topic: per partition, the offsets of its
// records, its high watermark and last stable offset.
func fetchOf(parts ...kgo.FetchPartition) kgo.Fetches {
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: parts}}}}
}

func part(p int32, hwm, lso int64, offsets ...int64) kgo.FetchPartition {
	fp := kgo.FetchPartition{Partition: p, HighWatermark: hwm, LastStableOffset: lso}
	for _, o := range offsets {
		fp.Records = append(fp.Records, &kgo.Record{Topic: "t", Partition: p, Offset: o})
	}
	return fp
}

// TestCaughtUp is the rule of adaptive publication's light stream.
func TestCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		poll  kgo.Fetches
		light bool
	}{
		{"empty poll", nil, true},
		{"partition read to its high watermark", fetchOf(part(0, 10, 10, 8, 9)), true},
		{"every partition at its end", fetchOf(part(0, 10, 10, 9), part(1, 3, 3, 0, 1, 2)), true},
		{"a transaction's commit marker ends the partition", fetchOf(part(0, 11, 11, 8, 9)), true},
		{"a partition with a record without data left", fetchOf(part(0, 10, 10), part(1, 5, 5, 4)), true},
		{"a backlog: stopped short of the end", fetchOf(part(0, 20_000, 20_000, 498, 499)), false},
		{"one partition of two behind", fetchOf(part(0, 10, 10, 9), part(1, 900, 900, 100)), false},
		{"an open transaction: read to the last stable offset", fetchOf(part(0, 50, 10, 9)), true},
		{"unknown high watermark", fetchOf(part(0, -1, -1, 9)), false},
	} {
		if got := caughtUp(tc.poll); got != tc.light {
			t.Errorf("%s: caughtUp = %v, want %v", tc.name, got, tc.light)
		}
	}
}

// TestGroupedDirtyKeepsEveryTileInEntityOrder: a publication produces
// every dirty tile once with its timestamp, each entity's tiles together,
// the entities in load order (ord), each one's by feature and start (the
// order that reads each series sequentially), after what dst already held;
// the entities' scratch is left at 0.
func TestGroupedDirtyKeepsEveryTileInEntityOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ents []*entityState
	for i, ord := range rng.Perm(50) {
		ents = append(ents, &entityState{key: fmt.Sprintf("k%03d", i), ord: uint64(ord + 1)})
	}
	var order []dirtyEntry
	var scratch []*entityState
	for round := range 3 { // scratch reused, as publications do
		dirty := map[dirtyTile]int64{}
		for range 200 + 1000*round {
			d := dirtyTile{ents[rng.IntN(len(ents))], rng.IntN(4) - 1, rng.Int64N(40) * 3600_000}
			if rng.IntN(20) == 0 {
				d.start = aggregations.BaseStart
			}
			dirty[d] = rng.Int64N(1000)
		}
		prefix := dirtyEntry{ts: -1}
		order, scratch = groupedDirty(append(order[:0], prefix), scratch, dirty)
		if len(order) != 1+len(dirty) || order[0] != prefix {
			t.Fatalf("round %d: %d entries after dst's one, want the %d dirty tiles after it", round, len(order)-1, len(dirty))
		}
		got := order[1:]
		done := map[*entityState]bool{}
		for i, e := range got {
			if ts, ok := dirty[e.dirtyTile]; !ok || ts != e.ts {
				t.Fatalf("round %d, entry %d: %+v with ts %d, dirty has %d (%v)", round, i, e.dirtyTile, e.ts, ts, ok)
			}
			delete(dirty, e.dirtyTile)
			if i == 0 || got[i-1].es != e.es {
				if done[e.es] {
					t.Fatalf("round %d, entry %d: entity %q comes back after another entity's tiles", round, i, e.es.key)
				}
				if i > 0 && got[i-1].es.ord > e.es.ord {
					t.Fatalf("round %d, entry %d: entity %q (ord %d) after %q (ord %d)", round, i, e.es.key, e.es.ord, got[i-1].es.key, got[i-1].es.ord)
				}
				done[e.es] = true
				continue
			}
			p := got[i-1]
			if p.feature > e.feature || (p.feature == e.feature && p.start >= e.start) {
				t.Fatalf("round %d, entry %d of entity %q: feature %d start %d after feature %d start %d", round, i, e.es.key, e.feature, e.start, p.feature, p.start)
			}
		}
		if len(dirty) != 0 {
			t.Fatalf("round %d: %d dirty tiles not produced", round, len(dirty))
		}
		for _, es := range ents {
			if es.pubPos != 0 {
				t.Fatalf("round %d: entity %q left with pubPos %d", round, es.key, es.pubPos)
			}
		}
	}
}

// TestPollSizeCountsEntities: a poll takes records for about
// MaxPollRecords entities at the last batch's records per modified entity
// (at most maxPollGrowth times MaxPollRecords), within the entity caches'
// room, and never fewer than MaxPollRecords records.
func TestPollSizeCountsEntities(t *testing.T) {
	cacheOf := func(n int) map[string]*entityState {
		m := map[string]*entityState{}
		for i := range n {
			m[fmt.Sprint(i)] = &entityState{}
		}
		return m
	}
	for _, tc := range []struct {
		name              string
		records, modified int   // the last batch's
		cached            []int // entities cached per pending partition
		want              int
	}{
		{"no batch yet", 0, 0, nil, 20_000},
		{"a record per entity", 20_000, 20_000, nil, 20_000},
		{"fewer records than entities (none counted)", 100, 300, nil, 20_000},
		{"2 records per entity", 20_000, 10_000, nil, 40_000},
		{"2.5 records per entity", 5, 2, nil, 50_000},
		{"16 records per entity: the caches' room", 20_000, 1_250, []int{50_000, 5_000}, 45_000},
		{"16 records per entity, a larger room: the growth bound", 20_000, 1_250, nil, 100_000},
		{"2 records per entity, less room: the room", 20_000, 10_000, []int{60_000, 5_000}, 35_000},
		{"room below MaxPollRecords: MaxPollRecords", 20_000, 1_000, []int{90_000}, 20_000},
		{"full caches: MaxPollRecords", 20_000, 1_000, []int{100_000}, 20_000},
	} {
		w := &Worker{o: Options{MaxPollRecords: 20_000, MaxCachedEntities: 100_000}, pub: &publisher{}, lastRecords: tc.records, lastModified: tc.modified}
		for _, n := range tc.cached {
			w.pub.pending = append(w.pub.pending, &partState{cache: cacheOf(n)})
		}
		if got := w.pollSize(); got != tc.want {
			t.Errorf("%s: pollSize %d, want %d", tc.name, got, tc.want)
		}
	}
}
