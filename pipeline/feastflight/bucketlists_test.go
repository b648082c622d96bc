package feastflight_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
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

// TestFlightBucketedLists: a historical retrieval of bucketed last_k (of
// a double), first_k (of a string) and top_k (of a string) features
// answers Arrow map<utf8, list<double>>, map<utf8, list<utf8>> and
// map<utf8, list<struct<value: utf8, count: int64>>> columns equal at every
// entity row to the brute force (aggtest.BucketGroups, then
// BruteForceList, BruteForceStringList or BruteForceTopK per bucket) over
// events produced out of event-time order, max_buckets folding into
// __other__, null for an empty window and an unknown key.
func TestFlightBucketedLists(t *testing.T) {
	k, cfg, pc := testkit.Setup(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: last_by_cur, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: currency, max_buckets: 2, window: 1d, owner: t, description: d}
  - {name: first_m_by_cur, version: 1, entity: user, source: transactions, aggregation: first_k, k: 2, field: merchant_id, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: top_m_by_cur, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: merchant_id, bucket: currency, max_buckets: 2, window: 1d, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	h := aggregations.Hour
	now := time.Now().UnixMilli()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 8))
	events := map[string][]aggregations.Event{}
	curs := []string{"EUR", "EUR", "USD", "GBP", "CHF"}
	add := func(key string, ts int64, cur, merchant string, amount float64) {
		r, err := enc.Record(map[string]any{"user_id": key, "ts": ts, "merchant_id": merchant, "amount": amount, "currency": cur})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		events[key] = append(events[key], aggregations.Event{TS: ts, Seq: r.Offset, Value: amount, Str: merchant, Bucket: cur})
	}
	for range 30 {
		add("many", now-rng.Int64N(30*h), curs[rng.IntN(len(curs))], []string{"m-1", "m-2", "m-3"}[rng.IntN(3)], float64(rng.IntN(4))+0.5)
	}
	add("old", now-30*aggregations.Day, "EUR", "m-1", 9)

	cl := serveFlight(t, feastflight.Options{Brokers: k.Brokers, Config: cfg})
	var keys []string
	var times []int64
	for _, key := range []string{"many", "old", "nobody"} {
		for _, T := range []int64{now - 20*h, now - 5*h, now + 1} {
			keys, times = append(keys, key), append(times, T)
		}
	}
	names := []string{"last_by_cur", "first_m_by_cur", "top_m_by_cur"}
	wantTypes := map[string]arrow.DataType{
		"last_by_cur":    arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOfNonNullable(arrow.PrimitiveTypes.Float64)),
		"first_m_by_cur": arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOfNonNullable(arrow.BinaryTypes.String)),
		"top_m_by_cur": arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOfNonNullable(arrow.StructOf(
			arrow.Field{Name: "value", Type: arrow.BinaryTypes.String}, arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64}))),
	}
	batches := retrieve(t, cl, []string{"transactions:last_by_cur", "transactions:first_m_by_cur", "transactions:top_m_by_cur"}, keys, times)
	got := map[string][]any{}
	for _, b := range batches {
		for c, f := range b.Schema().Fields() {
			want, ok := wantTypes[f.Name]
			if !ok {
				continue
			}
			if !arrow.TypeEqual(f.Type, want) {
				t.Fatalf("column %s is %s, want %s", f.Name, f.Type, want)
			}
			m := b.Column(c).(*array.Map)
			ks := m.Keys().(*array.String)
			for i := 0; i < m.Len(); i++ {
				if m.IsNull(i) {
					got[f.Name] = append(got[f.Name], nil)
					continue
				}
				lo, hi := m.ValueOffsets(i)
				row := map[string]any{}
				for j := lo; j < hi; j++ {
					row[ks.Value(int(j))] = m.Items().GetOneForMarshal(int(j)) // Arrow's own JSON of the list
				}
				got[f.Name] = append(got[f.Name], jsonValue(t, row))
			}
		}
	}
	reached := map[string]bool{}
	for _, name := range names {
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
			groups := aggtest.BucketGroups(f.Window, events[key], times[i], f.MaxBuckets)
			var want any
			if known && len(groups) > 0 {
				m := map[string]any{}
				for b, g := range groups {
					switch f.Aggregation {
					case aggregations.TopK:
						var typed []aggtest.Typed[string]
						for _, e := range g {
							typed = append(typed, aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str})
						}
						l, _ := aggtest.BruteForceTopK(f.Window, typed, times[i], f.K)
						var out []map[string]any
						for _, x := range l {
							out = append(out, map[string]any{"value": x.Value, "count": x.Count})
						}
						m[b] = out
					case aggregations.FirstK:
						m[b], _ = aggtest.BruteForceStringList(f.Aggregation, f.Window, g, times[i])
					default:
						m[b], _ = aggtest.BruteForceList(f.Aggregation, f.Window, g, times[i])
					}
				}
				want = jsonValue(t, m)
			}
			if !reflect.DeepEqual(got[name][i], want) {
				t.Errorf("row %d (%s, T=%d) %s = %v, want %v", i, key, times[i], name, got[name][i], want)
			}
			wm, _ := want.(map[string]any)
			if _, ok := wm[aggregations.OtherBucket]; ok {
				reached["other"] = true
			}
			if want == nil {
				reached["null"] = true
			}
		}
	}
	if !reached["null"] || !reached["other"] {
		t.Errorf("the test did not reach null and __other__: %v", reached)
	}
}

// jsonValue is x as encoding/json decodes its JSON text.
func jsonValue(t *testing.T, x any) any {
	t.Helper()
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFlightBucketedListsOfLongsAndBooleans: a bucketed last_k of a long
// field and top_k of a boolean field answer map<utf8, list<int64>> and
// map<utf8, list<struct<value: bool, count: int64>>>, equal to the brute
// force (false before true on a tie of counts).
func TestFlightBucketedListsOfLongsAndBooleans(t *testing.T) {
	k, cfg, pc := testkit.Setup(t, `entities:
  - {name: user, key: user_id}
sources:
  - {name: logins, topic: logins-{{ID}}, schema: login.avsc, event_time: ts}
features:
  - {name: times_by_country, version: 1, entity: user, source: logins, aggregation: last_k, k: 2, field: ts, bucket: country, window: lifetime, owner: t, description: d}
  - {name: top_ok_by_country, version: 1, entity: user, source: logins, aggregation: top_k, k: 2, field: success, bucket: country, max_buckets: 1, window: lifetime, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	enc, err := produce.NewEncoder(cfg, "logins")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var times, oks []aggregations.Event
	for range 20 {
		ts, country, ok := now-rng.Int64N(3*aggregations.Day), []string{"DE", "FR", "FR"}[rng.IntN(3)], rng.IntN(2) == 0
		r, err := enc.Record(map[string]any{"user_id": "u", "ts": ts, "country": country, "success": ok})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		b := 0.0
		if ok {
			b = 1
		}
		times = append(times, aggregations.Event{TS: ts, Seq: r.Offset, Value: float64(ts), Bucket: country})
		oks = append(oks, aggregations.Event{TS: ts, Seq: r.Offset, Value: b, Bucket: country})
	}
	cl := serveFlight(t, feastflight.Options{Brokers: k.Brokers, Config: cfg})
	batches := retrieve(t, cl, []string{"logins:times_by_country", "logins:top_ok_by_country"}, []string{"u", "nobody"}, []int64{now + 1, now + 1})
	wantTypes := map[string]arrow.DataType{
		"times_by_country": arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOfNonNullable(arrow.PrimitiveTypes.Int64)),
		"top_ok_by_country": arrow.MapOf(arrow.BinaryTypes.String, arrow.ListOfNonNullable(arrow.StructOf(
			arrow.Field{Name: "value", Type: arrow.FixedWidthTypes.Boolean}, arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64}))),
	}
	got := map[string][]any{}
	for _, b := range batches {
		for c, f := range b.Schema().Fields() {
			want, ok := wantTypes[f.Name]
			if !ok {
				continue
			}
			if !arrow.TypeEqual(f.Type, want) {
				t.Fatalf("column %s is %s, want %s", f.Name, f.Type, want)
			}
			m := b.Column(c).(*array.Map)
			ks := m.Keys().(*array.String)
			for i := 0; i < m.Len(); i++ {
				if m.IsNull(i) {
					got[f.Name] = append(got[f.Name], nil)
					continue
				}
				lo, hi := m.ValueOffsets(i)
				row := map[string]any{}
				for j := lo; j < hi; j++ {
					row[ks.Value(int(j))] = m.Items().GetOneForMarshal(int(j))
				}
				got[f.Name] = append(got[f.Name], jsonValue(t, row))
			}
		}
	}
	wantTimes, wantTops := map[string]any{}, map[string]any{}
	f, _ := cfg.Feature("times_by_country")
	for b, g := range aggtest.BucketGroups(f.Window, times, now+1, f.MaxBuckets) {
		l, _ := aggtest.BruteForceList(f.Aggregation, f.Window, g, now+1)
		var longs []int64
		for _, x := range l {
			longs = append(longs, int64(x))
		}
		wantTimes[b] = longs
	}
	f, _ = cfg.Feature("top_ok_by_country")
	for b, g := range aggtest.BucketGroups(f.Window, oks, now+1, f.MaxBuckets) {
		var typed []aggtest.Typed[float64]
		for _, e := range g {
			typed = append(typed, aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value})
		}
		top, _ := aggtest.BruteForceTopK(f.Window, typed, now+1, f.K)
		var l []map[string]any
		for _, x := range top {
			l = append(l, map[string]any{"value": x.Value != 0, "count": x.Count})
		}
		wantTops[b] = l
	}
	if _, ok := wantTops[aggregations.OtherBucket]; !ok {
		t.Fatalf("setup: no %s in %v", aggregations.OtherBucket, wantTops)
	}
	for name, want := range map[string]any{"times_by_country": jsonValue(t, wantTimes), "top_ok_by_country": jsonValue(t, wantTops)} {
		if len(got[name]) != 2 || !reflect.DeepEqual(got[name][0], want) || got[name][1] != nil {
			t.Errorf("%s = %v, want [%v <nil>]", name, got[name], want)
		}
	}
}
