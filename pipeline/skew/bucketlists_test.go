package skew_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

const payAmountSchema = `{"type": "record", "name": "Pay", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant", "type": "string"},
  {"name": "currency", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "ts", "type": "long"}]}`

// bucketListFile has a bucketed last_k of numbers (max_buckets 2: the
// others fold into __other__), a bucketed last_k of a string field and a
// bucketed top_k of a string field (max_buckets 3).
var bucketListFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: pays
    topic: pays-{{ID}}
    schema: pay.avsc
    event_time: ts
features:
  - {name: last_amounts_by_currency, version: 1, entity: user, source: pays, aggregation: last_k, k: 3, field: amount, bucket: currency, max_buckets: 2, window: 2d, owner: t, description: d}
  - {name: last_merchants_by_currency, version: 1, entity: user, source: pays, aggregation: last_k, k: 2, field: merchant, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: top_merchants_by_currency, version: 1, entity: user, source: pays, aggregation: top_k, k: 2, field: merchant, bucket: currency, max_buckets: 3, window: 2d, owner: t, description: d}
`

// TestSkewComparesBucketLists: bucketed first_k/last_k and top_k values
// served in the lookup log's "bucket_lists", "bucket_string_lists" and
// "bucket_tops" are compared with the backfill's recomputed maps. Served
// maps built by brute force (aggtest.BucketGroups, then BruteForceList,
// BruteForceStringList, BruteForceTopK per bucket) give no mismatch; a
// changed list element, a missing bucket, a changed top_k count and a map
// served null are exactly four mismatches, with examples carrying both
// maps; a top_k bucket served with an error (past exactness) whose counts
// are within it is no mismatch.
func TestSkewComparesBucketLists(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, bucketListFile, testkit.SetupOptions{Files: map[string]string{"pay.avsc": payAmountSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "pays")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(17, 19))
	now := time.Now().Add(-time.Minute).UnixMilli()
	const users = 4
	merchants := []string{"m-1", "m-2", "café ☕", `quote " and \ backslash`, ""}
	currencies := []string{"EUR", "USD", "GBP", "CHF", "EUR"}
	evs := map[string][]aggregations.Event{}
	var recs []*kgo.Record
	var keys []string
	var pays []aggregations.Event
	for range 300 { // in random event-time order
		key := fmt.Sprintf("user-%d", rng.IntN(users))
		ts := now - 1000 - rng.Int64N(5*aggregations.Day)
		m, c, a := merchants[rng.IntN(len(merchants))], currencies[rng.IntN(len(currencies))], float64(rng.IntN(40))/4
		r, err := enc.Record(map[string]any{"user_id": key, "merchant": m, "currency": c, "amount": a, "ts": ts})
		if err != nil {
			t.Fatal(err)
		}
		recs, keys, pays = append(recs, r), append(keys, key), append(pays, aggregations.Event{TS: ts, Value: a, Str: m, Bucket: c})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		e := pays[i]
		e.Seq = aggregations.Seq(r.Partition, r.Offset)
		evs[keys[i]] = append(evs[keys[i]], e)
	}
	feature := func(id string) *config.Feature {
		f, err := cfg.Feature(id)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	amounts, merch, tops := feature("last_amounts_by_currency@1"), feature("last_merchants_by_currency@1"), feature("top_merchants_by_currency@1")
	var log []*kgo.Record
	rows, folded, nulls := 0, 0, 0
	for at := now - 6*aggregations.Day; at < now; at += 3*aggregations.Hour + 7 { // from before the first event: null maps too
		for u := range users {
			key := fmt.Sprintf("user-%d", u)
			e := &lookuplog.Entry{Entity: "user", Key: key, At: at, Features: map[string]*float64{},
				BucketLists:       map[string]map[string][]float64{amounts.ID: nil},
				BucketStringLists: map[string]map[string][]string{merch.ID: nil},
				BucketTops:        map[string]map[string]*lookuplog.ServedTop{tops.ID: nil}}
			for _, f := range []*config.Feature{amounts, merch, tops} {
				groups := aggtest.BucketGroups(f.Window, evs[key], at, f.MaxBuckets)
				if len(groups) == 0 {
					continue // an empty window: null
				}
				for b, g := range groups {
					switch f {
					case amounts:
						if e.BucketLists[f.ID] == nil {
							e.BucketLists[f.ID] = map[string][]float64{}
						}
						e.BucketLists[f.ID][b], _ = aggtest.BruteForceList(f.Aggregation, f.Window, g, at)
					case merch:
						if e.BucketStringLists[f.ID] == nil {
							e.BucketStringLists[f.ID] = map[string][]string{}
						}
						e.BucketStringLists[f.ID][b], _ = aggtest.BruteForceStringList(f.Aggregation, f.Window, g, at)
					case tops:
						if e.BucketTops[f.ID] == nil {
							e.BucketTops[f.ID] = map[string]*lookuplog.ServedTop{}
						}
						e.BucketTops[f.ID][b] = &lookuplog.ServedTop{Value: bruteTop(f, g, at)}
					}
				}
			}
			if _, ok := e.BucketLists[amounts.ID][aggregations.OtherBucket]; ok {
				folded++
			}
			if e.BucketTops[tops.ID] == nil {
				nulls++
			}
			rows++
			switch rows {
			case 40: // one element of one bucket's list changed
				l := e.BucketLists[amounts.ID][firstKey(t, e.BucketLists[amounts.ID], key, at)]
				l[len(l)-1] += 0.5
			case 50: // a bucket left out
				delete(e.BucketStringLists[merch.ID], firstKey(t, e.BucketStringLists[merch.ID], key, at))
			case 60: // one top_k count changed, served exact
				top := e.BucketTops[tops.ID][firstKey(t, e.BucketTops[tops.ID], key, at)]
				top.Value = bytes.Replace(top.Value, []byte(`"count":`), []byte(`"count":1`), 1)
			case 70: // the map served null
				firstKey(t, e.BucketTops[tops.ID], key, at)
				e.BucketTops[tops.ID] = nil
			case 80: // served past exactness (error 5): a count 3 above agrees
				top := e.BucketTops[tops.ID][firstKey(t, e.BucketTops[tops.ID], key, at)]
				top.Error = 5
				top.Value = addToFirstCount(t, top.Value, 3)
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			log = append(log, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte(key), Value: b, Timestamp: time.UnixMilli(at)})
		}
	}
	if folded == 0 || nulls == 0 {
		t.Fatalf("test data: %d maps with %s and %d null maps, want some of each", folded, aggregations.OtherBucket, nulls)
	}
	if err := cl.ProduceSync(ctx, log...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Examples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != int64(rows) || rep.Compared != int64(rows*3) || rep.Mismatches != 4 {
		t.Fatalf("%d entries, %d compared, %d mismatches; want %d, %d, 4:\n%s", rep.Entries, rep.Compared, rep.Mismatches, rows, rows*3, text(rep))
	}
	af := rep.Feature(amounts.ID)
	if af == nil || !af.Buckets || !af.List || af.String || af.Mismatches != 1 || af.NullMismatches != 0 || len(af.Examples) != 1 || af.MaxAbsDiff != 0.5 {
		t.Fatalf("%s: %+v", amounts.ID, af)
	}
	if ex := af.Examples[0]; len(ex.ServedBucketLists) != len(ex.RecomputedBucketLists) || maps.EqualFunc(ex.ServedBucketLists, ex.RecomputedBucketLists, slices.Equal[[]float64]) {
		t.Errorf("%s example %+v: want one list differing", amounts.ID, ex)
	}
	mf := rep.Feature(merch.ID)
	if mf == nil || !mf.Buckets || !mf.List || !mf.String || mf.Mismatches != 1 || len(mf.Examples) != 1 ||
		len(mf.Examples[0].ServedBucketStringLists) != len(mf.Examples[0].RecomputedBucketStringLists)-1 {
		t.Fatalf("%s: %+v, want one example missing a bucket", merch.ID, mf)
	}
	tf := rep.Feature(tops.ID)
	if tf == nil || !tf.Buckets || !tf.Top || tf.Mismatches != 2 || tf.NullMismatches != 1 || len(tf.Examples) != 2 ||
		tf.Examples[0].ServedBucketTops == nil || tf.Examples[1].ServedBucketTops != nil || tf.Examples[1].RecomputedBucketTops == nil {
		t.Fatalf("%s: %+v, want a changed count and a null map", tops.ID, tf)
	}
	if s := text(rep); !strings.Contains(s, `"count":1`) || !strings.Contains(s, "SKEW: 4 of") {
		t.Errorf("the text report does not show the tampered top_k:\n%s", s)
	}
}

// bruteTop is the brute-force top_k of f over the merchants (Str) of g as
// of at, as the lookup API's JSON text.
func bruteTop(f *config.Feature, g []aggregations.Event, at int64) json.RawMessage {
	typed := make([]aggtest.Typed[string], len(g))
	for i, e := range g {
		typed[i] = aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str}
	}
	top, _ := aggtest.BruteForceTopK(f.Window, typed, at, f.Window.K())
	l := make([]aggregations.TopValue, len(top))
	for i, c := range top {
		l[i] = aggregations.TopValue{Str: c.Value, Count: c.Count}
	}
	return jsonenc.AppendTopValues(nil, l, aggregations.TypeString)
}

// addToFirstCount adds n to the count of the first entry of a top_k text.
func addToFirstCount(t *testing.T, text json.RawMessage, n int64) json.RawMessage {
	t.Helper()
	var l []struct {
		Value string `json:"value"`
		Count int64  `json:"count"`
	}
	if err := json.Unmarshal(text, &l); err != nil || len(l) == 0 {
		t.Fatalf("top_k text %s: %v", text, err)
	}
	out := make([]aggregations.TopValue, len(l))
	for i, x := range l {
		out[i] = aggregations.TopValue{Str: x.Value, Count: x.Count}
	}
	out[0].Count += n
	return jsonenc.AppendTopValues(nil, out, aggregations.TypeString)
}

// firstKey is the smallest key of m; it fails the test when m is empty.
func firstKey[V any](t *testing.T, m map[string]V, key string, at int64) string {
	t.Helper()
	if len(m) == 0 {
		t.Fatalf("test data: no bucket for %s at %d, want one to tamper with", key, at)
	}
	return slices.Min(slices.Collect(maps.Keys(m)))
}
