package lookup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// The decoded views the feature-log consumer keeps between batches
// (Options.ApplyCacheEntities) change nothing in the view: the same
// batches of upserts and tombstones of many entities, applied with no
// cache, with a cache smaller than the entities (dropped over and over) and
// with one holding them all, leave byte-identical Pebble views after every
// batch. Nor does applying a poll's partitions as one batch
// (applyLogParts), or a catch-up round's in batches of a share of each
// (applyLogRound): each key's records in one partition, the view holds the
// same series (its entries may be in another order).
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
	multi, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	ma := newLogApplier(multi.cache.enabled(), multi.o.ApplyCacheEntities)
	rounds, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	ra := newLogApplier(rounds.cache.enabled(), rounds.o.ApplyCacheEntities)
	for n, recs := range batches {
		for _, r := range reps {
			if err := r.svc.applyLog(r.a, cfg.Kafka.FeatureLogTopic, 0, recs); err != nil {
				t.Fatalf("%s, batch %d: %v", r.name, n, err)
			}
		}
		// The same records over 3 feature-log partitions, by key.
		parts := []kafka.Part{{Partition: 0}, {Partition: 1}, {Partition: 2}}
		for _, r := range recs {
			h := 0
			for _, c := range r.Key {
				h = h*31 + int(c)
			}
			lp := &parts[(h%3+3)%3]
			lp.Records = append(lp.Records, r)
		}
		if err := multi.applyLogParts(ma, cfg.Kafka.FeatureLogTopic, parts); err != nil {
			t.Fatalf("one batch of 3 partitions, batch %d: %v", n, err)
		}
		// A catch-up round of the same 3 partitions, applied in batches
		// of at most about 7 records (a share of each partition).
		if err := rounds.applyLogRound(ra, cfg.Kafka.FeatureLogTopic, parts, 7); err != nil {
			t.Fatalf("a round of 3 partitions, batch %d: %v", n, err)
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
			got, _, err := multi.o.Store.Get(nil, key)
			if err != nil {
				t.Fatal(err)
			}
			if w, g := viewEntries(t, want), viewEntries(t, got); w != g {
				t.Fatalf("after batch %d, the view of u%d applied as one batch of 3 partitions:\n%s\nwant\n%s", n, u, g, w)
			}
			if got, _, err = rounds.o.Store.Get(nil, key); err != nil {
				t.Fatal(err)
			}
			if w, g := viewEntries(t, want), viewEntries(t, got); w != g {
				t.Fatalf("after batch %d, the view of u%d applied as a round of 3 partitions:\n%s\nwant\n%s", n, u, g, w)
			}
		}
	}
	if len(reps[1].a.cache) > 3+30 {
		t.Errorf("the cache bounded to 3 entities between batches holds %d", len(reps[1].a.cache))
	}
}

// A catch-up round (one fetch response of every feature-log partition)
// is applied as one batch, not one per partition: an entity whose tiles
// are spread over the partitions (the key names the tile) has its view
// written once, where a batch per partition wrote it once per partition.
func TestCatchUpRoundWritesEachViewOnce(t *testing.T) {
	cfg := loadTestConfig(t)
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	const users, partitions = 12, 3
	round := make([]kafka.Part, partitions)
	for u := range users {
		for d := range partitions { // a tile of each user in each partition
			ref := keys.TileRef{Entity: "user", EntityKey: fmt.Sprintf("u%d", u), FeatureID: "txn_count_7d@1",
				Start: window.TileStart(T - int64(d)*aggregations.Day)}
			r := &kgo.Record{Offset: int64(len(round[d].Records)), Timestamp: time.UnixMilli(T)}
			_, r.Key, r.Value = featurelog.Append(nil, ref, aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: 1}}, true)
			round[d].Partition = int32(d)
			round[d].Records = append(round[d].Records, r)
		}
	}
	apply := func(perPartition bool) *Service {
		svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog})
		if err != nil {
			t.Fatal(err)
		}
		a := newLogApplier(svc.cache.enabled(), svc.o.ApplyCacheEntities)
		if perPartition {
			for _, part := range round {
				if err = svc.applyLog(a, cfg.Kafka.FeatureLogTopic, part.Partition, part.Records); err != nil {
					break
				}
			}
		} else {
			err = svc.applyLogRound(a, cfg.Kafka.FeatureLogTopic, round, logBatchRecords)
		}
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	bySvc, rdSvc := apply(true), apply(false)
	byPart, byRound := testutil.ToFloat64(bySvc.Metrics().ViewWrites), testutil.ToFloat64(rdSvc.Metrics().ViewWrites)
	if byRound != users || byPart != users*partitions {
		t.Errorf("views written (featurepipe_view_writes_total): %v as a round, %v partition by partition; want %d and %d", byRound, byPart, users, users*partitions)
	}
	for u := range users {
		key := keys.View(nil, "user", fmt.Sprintf("u%d", u))
		want, _, _ := bySvc.o.Store.Get(nil, key)
		got, _, _ := rdSvc.o.Store.Get(nil, key)
		if w, g := viewEntries(t, want), viewEntries(t, got); w != g || w == "" {
			t.Fatalf("the view of u%d applied as a round:\n%s\nwant\n%s", u, g, w)
		}
	}
	for p := range int32(partitions) {
		off, found, err := rdSvc.o.Store.GetOffset(keys.ViewLogOffset(cfg.Kafka.FeatureLogTopic, p))
		if err != nil || !found || off != users {
			t.Errorf("partition %d: read offset %d (found %v, %v), want %d", p, off, found, err, users)
		}
	}
}

// applyLog applies one batch of feature-log records of partition p (in
// offset order) to the view and commits it, with the partition's read
// offset (one past the last record), in one Pebble batch: how the
// catch-up applied them before rounds, and the tests' way to apply a batch.
func (s *Service) applyLog(a *logApplier, topic string, p int32, recs []*kgo.Record) error {
	return s.applyLogParts(a, topic, []kafka.Part{{Partition: p, Records: recs}})
}

// viewEntries describes an encoded view order-independently: its entries
// (feature, source partition, updated, encoded series), sorted.
func viewEntries(t *testing.T, val []byte) string {
	t.Helper()
	if len(val) == 0 {
		return ""
	}
	var e entityView
	if err := e.decode(val); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, id := range e.ids {
		out = append(out, fmt.Sprintf("%s/%d updated %d: %x", id, e.parts[i], e.updated[i], aggregations.AppendSeries(nil, &e.series[i])))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// When the decoded views outgrow Options.ApplyCacheEntities, the consumer
// drops the views changed longest ago, not all of them: an entity changed
// in every batch (a busy user) is read from Pebble once while one-off
// entities (pairs of a two-key entity, each seen once) come and go. The
// views stay exact (compared with a replica keeping nothing between batches).
func TestApplyCacheKeepsBusyEntitiesWhenFull(t *testing.T) {
	cfg := loadTestConfig(t)
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	const hot, coldPerBatch, batches, keep = 10, 40, 30, 100
	off := int64(0)
	record := func(user string, n int) *kgo.Record {
		ref := keys.TileRef{Entity: "user", EntityKey: user, FeatureID: "txn_count_7d@1", Start: window.TileStart(T)}
		r := &kgo.Record{Offset: off, Timestamp: time.UnixMilli(T)}
		off++
		_, r.Key, r.Value = featurelog.Append(nil, ref, aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: int64(n)}}, true)
		return r
	}
	newReplica := func(keep int) (*Service, *logApplier) {
		svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog,
			ApplyCacheEntities: keep})
		if err != nil {
			t.Fatal(err)
		}
		return svc, newLogApplier(svc.cache.enabled(), svc.o.ApplyCacheEntities)
	}
	svc, a := newReplica(keep)
	ref, ra := newReplica(-1)
	for b := range batches {
		var recs []*kgo.Record
		for h := range hot {
			recs = append(recs, record(fmt.Sprintf("hot%d", h), b+1))
		}
		for c := range coldPerBatch {
			recs = append(recs, record(fmt.Sprintf("cold%d-%d", b, c), 1))
		}
		for _, r := range []struct {
			svc *Service
			a   *logApplier
		}{{svc, a}, {ref, ra}} {
			if err := r.svc.applyLog(r.a, cfg.Kafka.FeatureLogTopic, 0, recs); err != nil {
				t.Fatalf("batch %d: %v", b, err)
			}
		}
		if len(a.cache) > keep+hot+coldPerBatch {
			t.Fatalf("after batch %d the cache bounded to %d holds %d views", b, keep, len(a.cache))
		}
	}
	// Every view read once: the hot ones survived every eviction.
	if want := hot + coldPerBatch*batches; a.loads != want {
		t.Errorf("views read from Pebble: %d, want %d (each entity once; the busy ones were dropped and read again)", a.loads, want)
	}
	for _, u := range []string{"hot0", "hot9", "cold0-0", fmt.Sprintf("cold%d-%d", batches-1, coldPerBatch-1)} {
		key := keys.View(nil, "user", u)
		want, _, err := ref.o.Store.Get(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := svc.o.Store.Get(nil, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !bytes.Equal(got, want) {
			t.Fatalf("view of %s: %x, want %x", u, got, want)
		}
	}
}
