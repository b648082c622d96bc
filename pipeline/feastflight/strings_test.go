package feastflight_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastflight"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// TestFlightStringFeatures: a historical retrieval of a last and a last_k
// of a string field (merchant_id) answers Arrow utf8 and list<utf8>
// columns equal at every entity row to aggtest.BruteForceString /
// BruteForceStringList (ties on event time in offset order, the empty
// string a value), null for an empty window and an unknown key.
func TestFlightStringFeatures(t *testing.T) {
	k, cfg, pc := testkit.Setup(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: merchant, version: 1, entity: user, source: transactions, aggregation: last, field: merchant_id, window: 1d, owner: t, description: d}
  - {name: merchants, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: merchant_id, window: 7d, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	h := aggregations.Hour
	now := time.Now().UnixMilli()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	evs := map[string][]aggregations.Event{}
	add := func(key string, ts int64, merchant string) {
		v := testkit.Event("transactions", key, ts, 1)
		v["merchant_id"] = merchant
		r, err := enc.Record(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		evs[key] = append(evs[key], aggregations.Event{TS: ts, Seq: aggregations.Seq(r.Partition, r.Offset), Str: merchant})
	}
	for i, m := range []string{"m-1", "café", "", "m-4", "m-5", "m-6"} {
		add("many", now-int64(i*7%6)*20*h, m) // out of event-time order
	}
	add("many", now-5*h, "tie-1") // a tie on event time: offset order
	add("many", now-5*h, "tie-2")
	add("old", now-30*aggregations.Day, "gone")

	cl := serveFlight(t, feastflight.Options{Brokers: k.Brokers, Config: cfg})

	var keys []string
	var times []int64
	for _, key := range []string{"many", "old", "nobody"} {
		for _, T := range []int64{now - 80*h, now - 5*h, now - 5*h + 1, now + 1} {
			keys, times = append(keys, key), append(times, T)
		}
	}
	batches := retrieve(t, cl, []string{"transactions:merchant", "transactions:merchants"}, keys, times)
	var last []*string
	var lists [][]string // nil: null
	for _, b := range batches {
		for c, f := range b.Schema().Fields() {
			switch f.Name {
			case "merchant":
				a, ok := b.Column(c).(*array.String)
				if !ok {
					t.Fatalf("column merchant is %s, want utf8", f.Type)
				}
				for i := 0; i < a.Len(); i++ {
					if a.IsNull(i) {
						last = append(last, nil)
					} else {
						v := a.Value(i)
						last = append(last, &v)
					}
				}
			case "merchants":
				if !arrow.TypeEqual(f.Type, arrow.ListOf(arrow.BinaryTypes.String)) {
					t.Fatalf("column merchants is %s, want list<utf8>", f.Type)
				}
				l := b.Column(c).(*array.List)
				vals := l.ListValues().(*array.String)
				for i := 0; i < l.Len(); i++ {
					if l.IsNull(i) {
						lists = append(lists, nil)
						continue
					}
					lo, hi := l.ValueOffsets(i)
					row := []string{}
					for j := lo; j < hi; j++ {
						row = append(row, vals.Value(int(j)))
					}
					lists = append(lists, row)
				}
			}
		}
	}
	if len(last) != len(keys) || len(lists) != len(keys) {
		t.Fatalf("%d and %d rows, want %d", len(last), len(lists), len(keys))
	}
	lf, _ := cfg.Feature("merchant")
	kf, _ := cfg.Feature("merchants")
	full := 0
	for i, key := range keys {
		ws, ok := aggtest.BruteForceString(lf.Aggregation, lf.Window, evs[key], times[i])
		if (last[i] != nil) != ok || (ok && *last[i] != ws) {
			t.Errorf("row %d (%s, T=now%+dh) merchant = %v, want %q (%v)", i, key, (times[i]-now)/h, last[i], ws, ok)
		}
		wl, ok := aggtest.BruteForceStringList(kf.Aggregation, kf.Window, evs[key], times[i])
		if (lists[i] != nil) != ok || !slices.Equal(lists[i], wl) {
			t.Errorf("row %d (%s, T=now%+dh) merchants = %q, want %q (%v)", i, key, (times[i]-now)/h, lists[i], wl, ok)
		}
		if len(wl) == kf.K {
			full++
		}
	}
	if full == 0 {
		t.Error("no row reached k strings")
	}
}
