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

// TestSortedDirtyKeepsEveryTileInEntityOrder: a publication produces every
// dirty tile once with its timestamp, each entity's tiles together, by
// feature and start (the order that reads each series sequentially);
// entities without an ord (0) are told apart by key.
func TestSortedDirtyKeepsEveryTileInEntityOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ents []*entityState // keys unique, as in a partition
	for i, k := range rng.Perm(1000)[:50] {
		ents = append(ents, &entityState{key: fmt.Sprintf("k%03d", k), ord: uint64(rng.IntN(3) * (i + 1))})
	}
	dirty := map[dirtyTile]int64{}
	for range 2000 {
		d := dirtyTile{ents[rng.IntN(len(ents))], rng.IntN(4) - 1, rng.Int64N(40) * 3600_000}
		if rng.IntN(20) == 0 {
			d.start = aggregations.BaseStart
		}
		dirty[d] = rng.Int64N(1000)
	}
	got := sortedDirty(nil, dirty)
	if len(got) != len(dirty) {
		t.Fatalf("%d entries, want the %d dirty tiles", len(got), len(dirty))
	}
	done := map[*entityState]bool{}
	for i, e := range got {
		if ts, ok := dirty[e.dirtyTile]; !ok || ts != e.ts {
			t.Fatalf("entry %d: %+v with ts %d, dirty has %d (%v)", i, e.dirtyTile, e.ts, ts, ok)
		}
		delete(dirty, e.dirtyTile)
		if i == 0 || got[i-1].es != e.es {
			if done[e.es] {
				t.Fatalf("entry %d: entity %q (ord %d) comes back after another entity's tiles", i, e.es.key, e.es.ord)
			}
			done[e.es] = true
			continue
		}
		p := got[i-1]
		if p.feature > e.feature || (p.feature == e.feature && p.start >= e.start) {
			t.Fatalf("entry %d of entity %q: feature %d start %d after feature %d start %d", i, e.es.key, e.feature, e.start, p.feature, p.start)
		}
	}
	if len(dirty) != 0 {
		t.Fatalf("%d dirty tiles not produced", len(dirty))
	}
}

// TestPollSizeFollowsTheCachesRoom: a poll takes MaxPollRecords records, or
// the entity caches' room when larger, so that a poll never takes them
// further past MaxCachedEntities than MaxPollRecords would.
func TestPollSizeFollowsTheCachesRoom(t *testing.T) {
	cacheOf := func(n int) map[string]*entityState {
		m := map[string]*entityState{}
		for i := range n {
			m[fmt.Sprint(i)] = &entityState{}
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		cached []int // entities cached per pending partition
		want   int
	}{
		{"empty caches: their whole room", nil, 50_000},
		{"room for more than MaxPollRecords", []int{10_000, 5_000}, 35_000},
		{"room for exactly MaxPollRecords", []int{30_000}, 20_000},
		{"less room: MaxPollRecords", []int{20_000, 15_000}, 20_000},
		{"full caches: MaxPollRecords", []int{50_000}, 20_000},
		{"past the bound: MaxPollRecords", []int{60_000}, 20_000},
	} {
		w := &Worker{o: Options{MaxPollRecords: 20_000, MaxCachedEntities: 50_000}, pub: &publisher{}}
		for _, n := range tc.cached {
			w.pub.pending = append(w.pub.pending, &partState{cache: cacheOf(n)})
		}
		if got := w.pollSize(); got != tc.want {
			t.Errorf("%s: pollSize %d, want %d", tc.name, got, tc.want)
		}
	}
}
