package worker

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// repoPlans loads the repository's feature file schemas/name and its plans.
func repoPlans(t *testing.T, name string) (*config.File, map[string]*events.Plan) {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "schemas", name))
	if err != nil {
		t.Fatal(err)
	}
	plans, err := events.Plans(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, plans
}

// prefetchWorker returns a worker over an in-memory store that decodes
// cfg's sources, and the store.
func prefetchWorker(t *testing.T, cfg *config.File) (*Worker, *state.Store) {
	t.Helper()
	st, err := state.Open("state", state.Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Worker{o: Options{Store: st}, pub: &publisher{}, decoder: events.NewDecoder(cfg, events.Limits{})}, st
}

// TestPrefetchLoadsWhatTheApplyWould: prefetch loads into the entity cache
// the stored state of exactly the entities a batch's records reach (not
// those cached or kept, not those of records before ps.next, rejected, or
// only re-keyed history below the published offset), equal to what
// entity loads, and only when enough are missing.
func TestPrefetchLoadsWhatTheApplyWould(t *testing.T) {
	cfg, plans := repoPlans(t, "history.yaml")
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	w, st := prefetchWorker(t, cfg)
	now := time.Now()
	newPart := func() *partState {
		return &partState{tp: topicPartition{"transactions", 0}, plan: plans["transactions"],
			cache: map[string]*entityState{}, kept: map[string]*entityState{}, dirty: map[dirtyTile]int64{}}
	}
	// Stored state for the even users: what a load must return.
	seed := newPart()
	b := st.NewBatch()
	for u := 0; u < 100; u += 2 {
		es := &entityState{key: fmt.Sprintf("u%03d", u), series: make([]aggregations.Series, len(seed.plan.Features))}
		for f := range es.series {
			es.series[f] = seriesAt(now.Add(-time.Duration(u+f) * time.Hour).UnixMilli())
		}
		if err := b.Set(keys.State(nil, "transactions", 0, es.key), encodeEntity(nil, seed.plan, seed.seenID, es), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	// 100 records of users u000..u099, offsets 100..199; u000-u009 are
	// before ps.next, u010 is cached, u011 kept, u012's record invalid.
	var records []*kgo.Record
	for u := range 100 {
		r, err := enc.Record(testkit.Event("transactions", fmt.Sprintf("u%03d", u), now.Add(-time.Minute).UnixMilli(), 1))
		if err != nil {
			t.Fatal(err)
		}
		if u == 12 {
			r.Value = []byte{0xff}
		}
		r.Offset = int64(100 + u)
		records = append(records, r)
	}
	loadedKeys := func(ps *partState) []string {
		var ks []string
		for k := range ps.cache {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}

	ps := newPart()
	ps.next, ps.applyFrom = 110, 110
	ps.cache["u010"] = &entityState{key: "u010"}
	ps.kept["u011"] = &entityState{key: "u011"}
	if err := w.prefetch(ps, records, now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	var want []string
	for u := 10; u < 100; u++ {
		if u != 11 && u != 12 {
			want = append(want, fmt.Sprintf("u%03d", u))
		}
	}
	if got := loadedKeys(ps); !slices.Equal(got, want) {
		t.Fatalf("cached after prefetch: %v\nwant %v", got, want)
	}
	if ps.prefetchLoads != len(want)-1 {
		t.Fatalf("%d prefetch loads counted, want %d", ps.prefetchLoads, len(want)-1)
	}
	for _, k := range want[1:] {
		one, err := w.load(ps.tp, ps.plan, k, &loadScratch{})
		if err != nil {
			t.Fatal(err)
		}
		if got, wantV := encodeEntity(nil, ps.plan, ps.seenID, ps.cache[k]), encodeEntity(nil, ps.plan, ps.seenID, one); string(got) != string(wantV) {
			t.Fatalf("%s prefetched differs from its load", k)
		}
	}

	// A partition re-reading its history only for re-keyed copies (all
	// below the published offset) loads nothing.
	ps = newPart()
	ps.next, ps.applyFrom, ps.published = 0, 1000, 1000
	ps.rekeyHist = []*rekeyHistory{{}}
	if err := w.prefetch(ps, records, now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if got := loadedKeys(ps); len(got) != 0 {
		t.Fatalf("re-keyed history prefetched %d entities: %v", len(got), got)
	}

	// Too few missing (below prefetchMinLoads), or skipped after a batch
	// that loaded few: nothing.
	for name, ps := range map[string]*partState{"few missing": newPart(), "skipped": newPart()} {
		recs := records[20:30]
		if name == "skipped" {
			recs = records[20:]
			ps.skipPrefetch = true
		}
		if err := w.prefetch(ps, recs, now.UnixMilli()); err != nil {
			t.Fatal(err)
		}
		if got := loadedKeys(ps); len(got) != 0 {
			t.Fatalf("%s: prefetched %v", name, got)
		}
	}
}

// TestPrefetchSkipsRepartitionDuplicates: in a repartition partition,
// prefetch loads no entity for a record the apply refuses before reaching
// one: without its origin headers, or at or below the marks (already
// applied, or a duplicate within the batch).
func TestPrefetchSkipsRepartitionDuplicates(t *testing.T) {
	cfg, plans := repoPlans(t, "demo.yaml")
	var plan *events.Plan
	for _, p := range plans {
		if p.Repartition != nil && len(p.Features) > 0 && (plan == nil || p.Topic < plan.Topic) {
			plan = p
		}
	}
	if plan == nil {
		t.Fatal("schemas/demo.yaml has no repartition plan with features")
	}
	enc, err := produce.NewEncoder(cfg, plan.Source.Name)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := prefetchWorker(t, cfg)
	now := time.Now()
	check := events.NewDecoder(cfg, events.Limits{})
	// The source plan gives each record's key in the repartition topic.
	src, rekey := plans[plan.Source.Topic], -1
	for i, rk := range src.Rekeys {
		if rk.Topic == plan.Topic {
			rekey = i
		}
	}
	if rekey < 0 {
		t.Fatalf("no re-keying of %s to %s", plan.Source.Topic, plan.Topic)
	}
	ps := &partState{tp: topicPartition{plan.Topic, 0}, plan: plan, marks: newMarks(),
		cache: map[string]*entityState{}, kept: map[string]*entityState{}, dirty: map[dirtyTile]int64{}}
	ps.marks.hwm[1] = 19 // source offsets up to 19 of source partition 1 are applied
	want := map[string]bool{}
	var records []*kgo.Record
	for i := range 60 {
		sr, err := enc.Record(map[string]any{"user_id": fmt.Sprintf("u%03d", i), "ts": now.Add(-time.Minute).UnixMilli(),
			"merchant_id": fmt.Sprintf("m%03d", i), "amount": 1.0, "currency": "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		sr.Partition, sr.Offset = 0, int64(i)
		if i < 20 {
			sr.Partition = 1 // applied already (the marks)
		}
		if i == 41 {
			sr.Offset = 40 // a duplicate of the record before it
		}
		var sev events.Event
		if rej := check.Decode(src, sr.Key, sr.Value, now.UnixMilli(), &sev); rej != nil {
			t.Fatalf("source record %d: %v", i, rej)
		}
		r := repartitionRecordFor(plan.Topic, sr, sev.Rekeyed[rekey])
		r.Offset = int64(i)
		if i == 20 {
			r.Headers = nil // no origin (dead-lettered)
		}
		if i > 20 && i != 41 {
			var ev events.Event
			if rej := check.Decode(plan, r.Key, r.Value, now.UnixMilli(), &ev); rej != nil {
				t.Fatalf("record %d: %v", i, rej)
			}
			want[ev.Key] = true
		}
		records = append(records, r)
	}
	if err := w.prefetch(ps, records, now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if len(ps.cache) != len(want) {
		t.Fatalf("%d entities prefetched, want %d", len(ps.cache), len(want))
	}
	for k := range ps.cache {
		if !want[k] {
			t.Fatalf("prefetched %q, which no admitted record reaches", k)
		}
	}
	if ps.marks.hwm[1] != 19 || len(ps.marks.hwm) != 1 || len(ps.marks.dirty) != 0 {
		t.Fatalf("prefetch moved the marks: %v, dirty %v", ps.marks.hwm, ps.marks.dirty)
	}
}
