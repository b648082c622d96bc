package feastflight_test

import (
	"context"
	"fmt"
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

// TestFlightBucketedFeatures: a historical retrieval of bucketed features
// answers Arrow map<utf8, int64> (count) and map<utf8, double> (sum)
// columns equal at every entity row to the brute force
// (aggtest.BucketGroups, then BruteForce per bucket; max_buckets folding
// into __other__), an empty map for an empty window and null for an
// unknown key.
func TestFlightBucketedFeatures(t *testing.T) {
	k, cfg, pc := testkit.Setup(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: by_cur, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: currency, max_buckets: 2, window: 1d, owner: t, description: d}
  - {name: n_by_cur, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: lifetime, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	h := aggregations.Hour
	now := time.Now().UnixMilli()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	events := map[string][]aggregations.Event{}
	curs := []string{"EUR", "USD", "EUR", "GBP", "CHF"}
	for i := range 12 {
		key, ts, cur := "many", now-int64(i*5%12)*3*h, curs[i%len(curs)]
		if i == 11 {
			key, ts = "old", now-30*aggregations.Day
		}
		r, err := enc.Record(map[string]any{"user_id": key, "ts": ts, "merchant_id": "m", "amount": float64(i) + 0.5, "currency": cur})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		events[key] = append(events[key], aggregations.Event{TS: ts, Seq: r.Offset, Value: float64(i) + 0.5, Bucket: cur})
	}
	cl := serveFlight(t, feastflight.Options{Brokers: k.Brokers, Config: cfg})
	var keys []string
	var times []int64
	for _, key := range []string{"many", "old", "nobody"} {
		for _, T := range []int64{now - 20*h, now - 5*h, now + 1} {
			keys, times = append(keys, key), append(times, T)
		}
	}
	batches := retrieve(t, cl, []string{"transactions:by_cur", "transactions:n_by_cur"}, keys, times)
	got := map[string][]map[string]float64{}
	for _, b := range batches {
		for c, f := range b.Schema().Fields() {
			if f.Name != "by_cur" && f.Name != "n_by_cur" {
				continue
			}
			item := arrow.DataType(arrow.PrimitiveTypes.Float64)
			if f.Name == "n_by_cur" {
				item = arrow.PrimitiveTypes.Int64
			}
			if !arrow.TypeEqual(f.Type, arrow.MapOf(arrow.BinaryTypes.String, item)) {
				t.Fatalf("column %s is %s, want map<utf8, %s>", f.Name, f.Type, item)
			}
			m := b.Column(c).(*array.Map)
			ks, items := m.Keys().(*array.String), m.Items()
			for i := 0; i < m.Len(); i++ {
				if m.IsNull(i) {
					got[f.Name] = append(got[f.Name], nil)
					continue
				}
				lo, hi := m.ValueOffsets(i)
				row := map[string]float64{}
				for j := lo; j < hi; j++ {
					switch a := items.(type) {
					case *array.Float64:
						row[ks.Value(int(j))] = a.Value(int(j))
					case *array.Int64:
						row[ks.Value(int(j))] = float64(a.Value(int(j)))
					}
				}
				got[f.Name] = append(got[f.Name], row)
			}
		}
	}
	reached := map[string]bool{}
	for _, name := range []string{"by_cur", "n_by_cur"} {
		f, err := cfg.Feature(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[name]) != len(keys) {
			t.Fatalf("%d rows of %s, want %d", len(got[name]), name, len(keys))
		}
		for i, key := range keys {
			known := false
			for _, e := range events[key] {
				known = known || e.TS < times[i]
			}
			var want map[string]float64
			if known {
				want = map[string]float64{}
				for b, g := range aggtest.BucketGroups(f.Window, events[key], times[i], f.MaxBuckets) {
					want[b], _ = aggtest.BruteForce(f.Aggregation, f.Window, g, times[i])
				}
			}
			if fmt.Sprint(got[name][i]) != fmt.Sprint(want) || (got[name][i] == nil) != (want == nil) {
				t.Errorf("row %d (%s, T=%d) %s = %v, want %v", i, key, times[i], name, got[name][i], want)
			}
			switch _, other := want[aggregations.OtherBucket]; {
			case want == nil:
				reached["null"] = true
			case len(want) == 0:
				reached["empty"] = true
			case other:
				reached["other"] = true
			}
		}
	}
	if !reached["null"] || !reached["empty"] || !reached["other"] {
		t.Errorf("the test did not reach null, an empty map and __other__: %v", reached)
	}
}
