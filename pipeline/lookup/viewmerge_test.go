package lookup

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// The view is written with blind writes (merge operands, see viewmerge.go)
// and is exactly the records applied one by one in log order (applyOp on a
// decoded view, the reference here), byte for byte, whatever Pebble does
// with the operands meanwhile: after every batch each view is read back
// while some of its operands are in the memtable and others in tables,
// flushed (operands merged without their base) or compacted (into a
// plain value) at random moments. Nor does applying a poll's partitions as
// one batch (applyLogParts), or a catch-up round's in batches of a share of
// each (applyLogRound), change the view: each key's records in one
// partition, it holds the same series (its entries may be in another
// order).
func TestMergedViewsAreTheRecordsAppliedInOrder(t *testing.T) {
	cfg := loadTestConfig(t)
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	rng := rand.New(rand.NewPCG(3, 4))
	var batches [][]*kgo.Record
	off := int64(0)
	for range 60 {
		var recs []*kgo.Record
		for range 1 + rng.IntN(30) {
			ref := keys.TileRef{Entity: "user", EntityKey: fmt.Sprintf("u%d", rng.IntN(12)),
				FeatureID: []string{"txn_count_7d@1", "txn_sum_1d@1"}[rng.IntN(2)], SourcePartition: int32(rng.IntN(2)),
				Start: window.TileStart(T - rng.Int64N(7*aggregations.Day))}
			r := &kgo.Record{Offset: off, Timestamp: time.UnixMilli(T - rng.Int64N(1000))}
			off++
			tile := aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: int64(1 + rng.IntN(9))}}
			_, r.Key, r.Value = featurelog.Append(nil, ref, tile, rng.IntN(5) != 0)
			recs = append(recs, r)
		}
		batches = append(batches, recs)
	}
	newReplica := func() (*Service, *logApplier) {
		svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog})
		if err != nil {
			t.Fatal(err)
		}
		return svc, newLogApplier(svc.cache.enabled())
	}
	svc, a := newReplica()
	multi, ma := newReplica()
	rounds, ra := newReplica()
	ref := map[string]*entityView{} // by entity key
	views := keys.View(nil, "user", "")
	for n, recs := range batches {
		for _, r := range recs {
			rec, err := featurelog.ParseRaw(r.Key, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			e := ref[string(rec.Ref.EntityKey)]
			if e == nil {
				e = &entityView{}
				ref[string(rec.Ref.EntityKey)] = e
			}
			applyOp(e, rec, r.Timestamp.UnixMilli())
		}
		if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, recs); err != nil {
			t.Fatalf("batch %d: %v", n, err)
		}
		switch rng.IntN(4) {
		case 0:
			if err := svc.o.Store.DB().Flush(); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := svc.o.Store.DB().Compact(context.Background(), views, keys.View(nil, "user\xff", ""), false); err != nil {
				t.Fatal(err)
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
			var want []byte
			if e := ref[fmt.Sprintf("u%d", u)]; e != nil {
				want = e.encode(nil)
			}
			got, _, err := svc.o.Store.Get(nil, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("after batch %d, the view of u%d is not its records applied in order:\n%s\nwant\n%s", n, u, viewEntries(t, got), viewEntries(t, want))
			}
			if got, _, err = multi.o.Store.Get(nil, key); err != nil {
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
	// After a full compaction every view is a plain value again.
	if err := svc.o.Store.DB().Compact(context.Background(), views, keys.View(nil, "user\xff", ""), false); err != nil {
		t.Fatal(err)
	}
	it, err := svc.o.Store.DB().NewIter(&pebble.IterOptions{LowerBound: views, UpperBound: keys.View(nil, "user\xff", "")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if isOps(it.Value()) {
			t.Fatalf("view %q is still an ops value after a full compaction", it.Key())
		}
	}
}

// ViewMerger's merges are associative, as Pebble requires: a run of
// operands merged in any grouping, newer or older first, partial merges
// (without the base: an ops value) merged again later, gives the same view
// as all of them applied at once, with or without a base view under them.
func TestViewMergerIsAssociative(t *testing.T) {
	window := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	rng := rand.New(rand.NewPCG(5, 6))
	ops := func() []byte { // an ops value of 1 to 4 records of one entity
		b := []byte(opsMagic)
		for range 1 + rng.IntN(4) {
			ref := keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: []string{"a@1", "b@1", keys.SeenFeatureID("s")}[rng.IntN(3)],
				SourcePartition: int32(rng.IntN(2)), Start: window.TileStart(T - rng.Int64N(7*aggregations.Day))}
			_, k, v := featurelog.Append(nil, ref, aggregations.Tile{Start: ref.Start, IR: aggregations.IR{Count: 1 + rng.Int64N(9), LastTS: T - rng.Int64N(1000)}}, rng.IntN(4) != 0)
			b = appendOp(b, k, v, T-rng.Int64N(1000))
		}
		return b
	}
	merge := func(vals [][]byte, older, includesBase bool) []byte {
		t.Helper()
		var m pebble.ValueMerger
		var err error
		if older { // newest first, as a forward iteration or a compaction hands them
			m, err = ViewMerger.Merge(nil, vals[len(vals)-1])
			for i := len(vals) - 2; i >= 0 && err == nil; i-- {
				err = m.MergeOlder(vals[i])
			}
		} else {
			m, err = ViewMerger.Merge(nil, vals[0])
			for _, v := range vals[1:] {
				if err == nil {
					err = m.MergeNewer(v)
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := m.Finish(includesBase)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for round := range 300 {
		var vals [][]byte
		if round%2 == 1 { // a base view under the operands
			var e entityView
			if err := applyOps(&e, ops()); err != nil {
				t.Fatal(err)
			}
			vals = append(vals, e.encode(nil))
		}
		for range 1 + rng.IntN(8) {
			vals = append(vals, ops())
		}
		want := merge(vals, false, true)
		if isOps(want) {
			t.Fatalf("round %d: a merge with its base is an ops value", round)
		}
		// Group consecutive operands at random; merge each group without
		// its base (the first group keeps the base view, if any), then
		// the groups' results with the base.
		var grouped [][]byte
		for i := 0; i < len(vals); {
			j := i + 1 + rng.IntN(len(vals)-i)
			g := merge(vals[i:j], rng.IntN(2) == 0, false)
			// Only the group holding the base view merges into a view.
			if wantView := i == 0 && !isOps(vals[0]); isOps(g) == wantView {
				t.Fatalf("round %d: a partial merge of values %d..%d: ops value %v, want %v", round, i, j, isOps(g), !wantView)
			}
			grouped = append(grouped, g)
			i = j
		}
		if got := merge(grouped, rng.IntN(2) == 0, true); !bytes.Equal(got, want) {
			t.Fatalf("round %d: merged in groups:\n%s\nwant\n%s", round, viewEntries(t, got), viewEntries(t, want))
		}
	}
}

// A replica's store must carry the view's merge operator: New refuses one
// without it, and OpenStore replaces the store of a featurepipe before
// blind view writes (Pebble's default merger) with a new one, which the
// replica then rebuilds like any view of an older layout.
func TestOpenStoreReplacesAViewOfAnOlderFeaturepipe(t *testing.T) {
	cfg := loadTestConfig(t)
	dir := t.TempDir()
	old, err := state.Open(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: old, LookupLogSample: NoLookupLog})
	if err == nil || !strings.Contains(err.Error(), "lookup.OpenStore") {
		t.Errorf("New with a store without the view's merger: %v, want an error naming lookup.OpenStore", err)
	}
	if err := old.DB().Set(keys.View(nil, "user", "u1"), []byte("old layout"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatalf("OpenStore on an older view: %v", err)
	}
	defer st.Close()
	if st.MergerName() != ViewMergerName {
		t.Errorf("merger %q, want %q", st.MergerName(), ViewMergerName)
	}
	if _, found, err := st.Get(nil, keys.View(nil, "user", "u1")); err != nil || found {
		t.Errorf("the older view's value is still there (found %v, %v)", found, err)
	}
	if _, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, LookupLogSample: NoLookupLog}); err != nil {
		t.Errorf("New with OpenStore's store: %v", err)
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
		a := newLogApplier(svc.cache.enabled())
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

// A lookup that misses between a commit's invalidation and the commit reads
// the old value from Pebble and caches it; the consumer then drops it after
// the commit (an entity the cache did not hold gets no new value there), so
// the next lookup reads the new one. The batch holds a merge operand for an
// entity the cache did not hold, and the whole new view (a Set, no operand
// for reads to merge) for one it held.
func TestACommitDropsTheOldValueALookupCachedDuringIt(t *testing.T) {
	cfg := loadTestConfig(t)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: openTestStore(t), LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(nil, nil) // caught up: commits maintain the lookup cache
	const count = "txn_count_7d@1"
	T := fixtureNow.UnixMilli()
	start := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}.TileStart(T)
	tile := func(n int64) []*kgo.Record {
		r := &kgo.Record{Timestamp: time.UnixMilli(T)}
		_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: count, Start: start},
			aggregations.Tile{Start: start, IR: aggregations.IR{Count: n}}, true)
		return []*kgo.Record{r}
	}
	cachedCount := func() (int64, bool) {
		v, _ := svc.cache.get(keys.View(nil, "user", "u1"))
		if v == nil {
			return 0, false
		}
		var e entityView
		if err := e.decode(v); err != nil {
			t.Fatal(err)
		}
		return e.series[e.index(count, 0)].Tiles[0].IR.Count, true
	}
	a := newLogApplier(true)
	if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, tile(1)); err != nil {
		t.Fatal(err)
	}
	lookup := func() {
		if err := svc.view("user", "u1", &lookupView{}); err != nil {
			t.Fatal(err)
		}
	}
	// written returns the kind and value the batch writes for u1's view.
	written := func(b *pebble.Batch) (pebble.InternalKeyKind, []byte) {
		r := b.Reader()
		for {
			kind, k, v, ok, err := r.Next()
			if err != nil || !ok {
				t.Fatalf("the batch has no write of u1's view (%v)", err)
			}
			if bytes.Equal(k, keys.View(nil, "user", "u1")) {
				return kind, v
			}
		}
	}
	svc.beforeCommit = func(b *pebble.Batch) {
		if kind, v := written(b); kind != pebble.InternalKeyKindMerge || !isOps(v) {
			t.Errorf("an entity the lookup cache does not hold: the batch writes a %s of %x, want a merge of its records", kind, v)
		}
		lookup()
		if n, ok := cachedCount(); !ok || n != 1 {
			t.Fatalf("a lookup during the commit cached count %d (cached %v), want the old 1", n, ok)
		}
	}
	if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, tile(2)); err != nil {
		t.Fatal(err)
	}
	svc.beforeCommit = nil
	if n, ok := cachedCount(); ok {
		t.Fatalf("after the commit the lookup cache holds count %d, want nothing (the old value dropped)", n)
	}
	lookup()
	if n, ok := cachedCount(); !ok || n != 2 {
		t.Fatalf("a lookup after the commit cached count %d (cached %v), want 2", n, ok)
	}
	// Cached now: the next commit writes the new view whole and gives the
	// cache the same bytes.
	var set []byte
	svc.beforeCommit = func(b *pebble.Batch) {
		kind, v := written(b)
		if kind != pebble.InternalKeyKindSet || isOps(v) {
			t.Errorf("an entity the lookup cache holds: the batch writes a %s of %x, want a Set of its view", kind, v)
		}
		set = bytes.Clone(v)
	}
	if err := svc.applyLog(a, cfg.Kafka.FeatureLogTopic, 0, tile(3)); err != nil {
		t.Fatal(err)
	}
	if v, _ := svc.cache.get(keys.View(nil, "user", "u1")); !bytes.Equal(v, set) {
		t.Errorf("the cached view %x is not the one written %x", v, set)
	}
	if n, ok := cachedCount(); !ok || n != 3 {
		t.Fatalf("after a commit of a cached view the cache holds count %d (cached %v), want 3", n, ok)
	}
}
