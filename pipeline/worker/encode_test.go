package worker

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// TestInChunksCoversEveryIndexOnce: the chunks are disjoint, cover [0, n)
// and number at most maxChunks (g below it), each at least minChunk long
// when there is more than one.
func TestInChunksCoversEveryIndexOnce(t *testing.T) {
	for _, tc := range []struct{ n, minChunk, maxChunks int }{{0, 1, 2}, {1, 1, 2}, {5, 1, 4}, {100, 64, 2}, {1000, 64, 3}, {10_000, 512, 4}, {10_000, 512, 1}} {
		seen := make([]atomic.Int32, tc.n)
		var shortest atomic.Int64
		shortest.Store(int64(tc.n))
		var badG atomic.Bool
		k := inChunks(tc.n, tc.minChunk, tc.maxChunks, func(g, lo, hi int) {
			if g < 0 || g >= tc.maxChunks {
				badG.Store(true)
			}
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
			for {
				cur := shortest.Load()
				if int64(hi-lo) >= cur || shortest.CompareAndSwap(cur, int64(hi-lo)) {
					break
				}
			}
		})
		for i := range seen {
			if c := seen[i].Load(); c != 1 {
				t.Fatalf("n %d: index %d visited %d times", tc.n, i, c)
			}
		}
		if k > tc.maxChunks || badG.Load() || (k > 1 && shortest.Load() < int64(tc.minChunk)) {
			t.Fatalf("n %d, minChunk %d, maxChunks %d: %d chunks (a chunk number out of range: %v), the shortest %d",
				tc.n, tc.minChunk, tc.maxChunks, k, badG.Load(), shortest.Load())
		}
	}
}

// TestStateEncoderMatchesOneByOne: the parallel encoder gives each staged
// partition's modified entities in key order, each with the key and value
// a one-by-one encoding gives, across chunks and partitions.
func TestStateEncoderMatchesOneByOne(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // several chunks on any machine
	// A plan of the repository's history feature file: its feature IDs are
	// what the values are encoded under.
	_, plans := repoPlans(t, "history.yaml")
	plan := plans["transactions"]
	if plan == nil || len(plan.IDs()) < 2 {
		t.Fatalf("no transactions plan with features in schemas/history.yaml: %v", plans)
	}
	var staged []*partState
	for p := range int32(3) {
		ps := &partState{tp: topicPartition{"t", p}, plan: plan, seenID: "seen"}
		for i := range 1500 {
			es := &entityState{key: fmt.Sprintf("u%05d", (i*7919)%1500), series: make([]aggregations.Series, len(plan.Features))}
			for f := range es.series {
				es.series[f] = seriesAt(t0+int64(i)*aggregations.Hour, t0+(int64(p)+int64(f))*aggregations.Hour)
			}
			if i%3 == 0 {
				es.seen = seriesAt(t0)
			}
			ps.modified = append(ps.modified, es)
		}
		staged = append(staged, ps)
	}
	var e stateEncoder
	for round := range 3 { // the later ones reuse the buffers, the last with fewer entities
		if round == 2 {
			for _, ps := range staged {
				ps.modified = ps.modified[:100]
			}
		}
		e.encode(staged)
		i := 0
		for _, ps := range staged {
			if !slices.IsSortedFunc(ps.modified, func(a, b *entityState) int { return strings.Compare(a.key, b.key) }) {
				t.Fatalf("round %d: partition %d's entities not in key order", round, ps.tp.partition)
			}
			for _, es := range ps.modified {
				key, val := e.entry(i)
				i++
				if want := keys.State(nil, "t", ps.tp.partition, es.key); !bytes.Equal(key, want) {
					t.Fatalf("round %d, entry %d: key %q, want %q", round, i-1, key, want)
				}
				if want := encodeEntity(nil, plan, ps.seenID, es); !bytes.Equal(val, want) {
					t.Fatalf("round %d, entry %d (%s/%d): value differs from a one-by-one encoding", round, i-1, es.key, ps.tp.partition)
				}
			}
		}
	}
}
