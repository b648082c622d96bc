package lookup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// The decoded views the feature-log consumer keeps between batches
// (Options.ApplyCacheEntities) change nothing in the view: the same
// batches of upserts and tombstones of many entities, applied with no
// cache, with a cache smaller than the entities (dropped over and over) and
// with one holding them all, leave byte-identical Pebble views after every
// batch.
func TestApplyCacheKeepsTheViewExact(t *testing.T) {
	cfg := loadTestConfig(t)
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	rng := rand.New(rand.NewPCG(3, 4))
	var batches [][]*kgo.Record
	off := int64(0)
	for range 40 {
		var recs []*kgo.Record
		for range 1 + rng.IntN(30) {
			ref := keys.TileRef{Entity: "user", EntityKey: fmt.Sprintf("u%d", rng.IntN(12)),
				FeatureID: []string{"txn_count_7d@1", "txn_sum_1d@1"}[rng.IntN(2)], SourcePartition: int32(rng.IntN(2)),
				Start: window.TileStart(T - rng.Int64N(7*aggregations.Day))}
			r := &kgo.Record{Offset: off, Timestamp: time.UnixMilli(T)}
			off++
			tile := aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: int64(1 + rng.IntN(9))}}
			_, r.Key, r.Value = featurelog.Append(nil, ref, tile, rng.IntN(5) != 0)
			recs = append(recs, r)
		}
		batches = append(batches, recs)
	}
	type replica struct {
		name string
		svc  *Service
		a    *logApplier
	}
	var reps []replica
	for _, keep := range []int{-1, 3, 1000} {
		svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog,
			ApplyCacheEntities: keep})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, replica{fmt.Sprintf("ApplyCacheEntities %d", keep), svc, newLogApplier(svc.cache.enabled(), svc.o.ApplyCacheEntities)})
	}
	for n, recs := range batches {
		for _, r := range reps {
			if err := r.svc.applyLog(r.a, cfg.Kafka.FeatureLogTopic, 0, recs); err != nil {
				t.Fatalf("%s, batch %d: %v", r.name, n, err)
			}
		}
		for u := range 12 {
			key := keys.View(nil, "user", fmt.Sprintf("u%d", u))
			want, _, err := reps[0].svc.o.Store.Get(nil, key)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reps[1:] {
				got, _, err := r.svc.o.Store.Get(nil, key)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("after batch %d, the view of u%d with %s differs from the one without cache", n, u, r.name)
				}
			}
		}
	}
	if len(reps[1].a.cache) > 3+30 {
		t.Errorf("the cache bounded to 3 entities between batches holds %d", len(reps[1].a.cache))
	}
}
