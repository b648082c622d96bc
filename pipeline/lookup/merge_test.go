package lookup

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// The view keeps the tiles of each source partition apart: an entity whose
// events producers put in several partitions has a partial tile per
// partition, each upserted and tombstoned by its partition's worker only,
// and a lookup merges them (counts add, last ties go to the higher
// partition).
func TestViewMergesSourcePartitions(t *testing.T) {
	c := newTestCluster(t, 3)
	cfg := loadTestConfig(t)
	st := openTestStore(t)
	svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: st, LookupLogSample: NoLookupLog,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	ctx := t.Context()
	// Every feature-log record in one partition of the log: they apply in
	// the order produced.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.FeatureLogTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	T := fixtureNow.UnixMilli()
	const count, last = "txn_count_7d@1", "txn_amount_last@1"
	count7d := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	recent, older := count7d.TileStart(T-aggregations.Hour), count7d.TileStart(T-3*aggregations.Day)
	send := func(part int32, feature string, start int64, ir *aggregations.IR) {
		t.Helper()
		r := &kgo.Record{}
		ref := keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: feature, SourcePartition: part, Start: start}
		if ir != nil {
			_, r.Key, r.Value = featurelog.Append(nil, ref, aggregations.Tile{Start: start, IR: *ir}, true)
		} else {
			_, r.Key, r.Value = featurelog.Append(nil, ref, aggregations.Tile{}, false)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	counted := func(n int64) *aggregations.IR { return &aggregations.IR{Count: n} }
	lastOf := func(v float64, ts int64, part int32, off int64) *aggregations.IR {
		return &aggregations.IR{Count: 1, Sum: v, Min: v, Max: v, Last: v, LastTS: ts, LastSeq: aggregations.Seq(part, off)}
	}
	fx := &fixture{svc: svc, cfg: cfg, h: svc.Handler()}
	expect := func(step string, want map[string]*float64, status map[string]string) {
		t.Helper()
		var got map[string]FeatureValue
		for deadline := time.Now().Add(20 * time.Second); ; {
			rec := fx.do(t, http.MethodPost, "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["txn_count_7d","txn_amount_last"]}`)
			if rec.Code == http.StatusOK {
				var resp LookupResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
					t.Fatal(err)
				}
				got = resp.Results[0].Features
				ok := true
				for name, w := range want {
					g := got[name]
					if (g.Value == nil) != (w == nil) || (w != nil && *g.Value != *w) || g.Status != status[name] {
						ok = false
					}
				}
				if ok {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %+v, want values %v statuses %v", step, got, want, status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	f := func(v float64) *float64 { return &v }
	present := map[string]string{"txn_count_7d": StatusPresent, "txn_amount_last": StatusPresent}

	// Partitions 0 and 1 share a tile, partition 2 has another. last: a tie
	// on event time between partitions 0 (later offset) and 1.
	send(0, count, recent, counted(3))
	send(1, count, recent, counted(4))
	send(2, count, older, counted(2))
	send(0, last, aggregations.BaseStart, lastOf(10, T-1000, 0, 900))
	send(1, last, aggregations.BaseStart, lastOf(20, T-1000, 1, 5))
	expect("three partitions", map[string]*float64{"txn_count_7d": f(9), "txn_amount_last": f(20)}, present)

	// An upsert of partition 0's tile replaces only its contribution.
	send(0, count, recent, counted(5))
	expect("partition 0 upserted", map[string]*float64{"txn_count_7d": f(11), "txn_amount_last": f(20)}, present)

	// A tombstone of partition 1's tiles removes only them.
	send(1, count, recent, nil)
	send(1, last, aggregations.BaseStart, nil)
	expect("partition 1 tombstoned", map[string]*float64{"txn_count_7d": f(7), "txn_amount_last": f(10)}, present)

	// Every tile gone: the entity is still known, its windows empty.
	send(0, count, recent, nil)
	send(2, count, older, nil)
	send(0, last, aggregations.BaseStart, nil)
	expect("all tombstoned", map[string]*float64{"txn_count_7d": f(0), "txn_amount_last": nil},
		map[string]string{"txn_count_7d": StatusEmptyWindow, "txn_amount_last": StatusEmptyWindow})
}

// Entries of one feature stay adjacent and in partition order whatever the
// order partitions first appear in, and a read folds exactly them.
func TestEntityViewKeepsPartitionsOfAFeatureTogether(t *testing.T) {
	var e entityView
	for _, x := range []struct {
		id   string
		part int32
	}{{"a@1", 2}, {"b@1", 0}, {"a@1", 0}, {"c@1", 1}, {"b@1", 3}, {"a@1", 1}} {
		i := e.add(x.id, x.part)
		e.series[i].SetTile(aggregations.Tile{Start: 0, IR: aggregations.IR{Count: int64(x.part + 1)}})
	}
	wantIDs := []string{"a@1", "a@1", "a@1", "b@1", "b@1", "c@1"}
	wantParts := []int32{0, 1, 2, 0, 3, 1}
	for i := range wantIDs {
		if e.ids[i] != wantIDs[i] || e.parts[i] != wantParts[i] || e.series[i].Tiles[0].IR.Count != int64(wantParts[i]+1) {
			t.Fatalf("entries %v %v, want %v %v", e.ids, e.parts, wantIDs, wantParts)
		}
	}
	var lv lookupView
	if err := lv.parse(e.encode(nil)); err != nil {
		t.Fatal(err)
	}
	w := aggregations.Window{Size: 0, Hop: 1}
	for id, want := range map[string]int64{"a@1": 1 + 2 + 3, "b@1": 1 + 4, "c@1": 2} {
		ir, _, found, err := lv.read(id, w, 10)
		if err != nil || !found || ir.Count != want {
			t.Fatalf("read %s: count %d found %v err %v, want %d", id, ir.Count, found, err, want)
		}
	}
	if _, _, found, _ := lv.read("d@1", w, 10); found {
		t.Fatal("a feature the view does not have was found")
	}
	if !raceEnabled {
		if n := testing.AllocsPerRun(100, func() { _, _, _, _ = lv.read("a@1", w, 10) }); n != 0 {
			t.Fatalf("a read merging three partitions allocated %v times", n)
		}
	}
}

// BenchmarkViewRead measures lookupView.read of one feature (7d window, 6h
// hop, a tile every 6h over 8 days) among 8 features whose events are in 1,
// 2 or 4 source partitions: the cost of each extra partition of an entity.
func BenchmarkViewRead(b *testing.B) {
	w := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}
	T := fixtureNow.UnixMilli()
	for _, parts := range []int32{1, 2, 4} {
		b.Run(fmt.Sprintf("partitions=%d", parts), func(b *testing.B) {
			var e entityView
			for f := range 8 {
				for p := range parts {
					i := e.add(fmt.Sprintf("feature_%d@1", f), p)
					for k := range 32 {
						start := w.TileStart(T - int64(k)*w.Hop)
						e.series[i].SetTile(aggregations.Tile{Start: start, IR: aggregations.IR{Count: 2, Sum: 3, Min: 1, Max: 2, Last: 2, LastTS: start + 1, LastSeq: aggregations.Seq(p, int64(k))}})
					}
				}
			}
			enc := e.encode(nil)
			var lv lookupView
			b.ReportAllocs()
			for b.Loop() {
				if err := lv.parse(enc); err != nil {
					b.Fatal(err)
				}
				if ir, _, found, err := lv.read("feature_5@1", w, T); err != nil || !found || ir.Count == 0 {
					b.Fatal(ir, found, err)
				}
			}
		})
	}
}
