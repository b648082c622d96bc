package skew_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

const payCurrencySchema = `{"type": "record", "name": "Pay", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant", "type": "string"},
  {"name": "currency", "type": "string"},
  {"name": "ts", "type": "long"}]}`

// bucketStringFile has a bucketed last (max_buckets 2: the others fold
// into __other__) and a bucketed first of a string field.
var bucketStringFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: pays
    topic: pays-{{ID}}
    schema: pay.avsc
    event_time: ts
features:
  - {name: last_merchant_by_currency, version: 1, entity: user, source: pays, aggregation: last, field: merchant, bucket: currency, max_buckets: 2, window: 2d, owner: t, description: d}
  - {name: first_merchant_by_currency, version: 1, entity: user, source: pays, aggregation: first, field: merchant, bucket: currency, window: lifetime, owner: t, description: d}
`

// TestSkewComparesBucketStrings: bucketed string features served in the
// lookup log's "bucket_strings" are compared with the backfill's
// recomputed maps exactly. Served maps built by brute force
// (aggtest.BucketGroups, then BruteForceString per bucket) give no
// mismatch; a tampered bucket string (one character added), a missing
// bucket and a map served null are exactly three mismatches, with examples
// carrying both maps.
func TestSkewComparesBucketStrings(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, bucketStringFile, testkit.SetupOptions{Files: map[string]string{"pay.avsc": payCurrencySchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "pays")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.Now().Add(-time.Minute).UnixMilli()
	const users = 4
	merchants := []string{"m-1", "m-2", "café ☕", `quote " and \ backslash`, ""}
	currencies := []string{"EUR", "USD", "GBP", "CHF"}
	evs := map[string][]aggregations.Event{}
	var recs []*kgo.Record
	var keys []string
	var pays []aggregations.Event
	for range 300 {
		key := fmt.Sprintf("user-%d", rng.IntN(users))
		ts := now - 1000 - rng.Int64N(5*aggregations.Day)
		m, c := merchants[rng.IntN(len(merchants))], currencies[rng.IntN(len(currencies))]
		r, err := enc.Record(map[string]any{"user_id": key, "merchant": m, "currency": c, "ts": ts})
		if err != nil {
			t.Fatal(err)
		}
		recs, keys, pays = append(recs, r), append(keys, key), append(pays, aggregations.Event{TS: ts, Str: m, Bucket: c})
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
	last, first := feature("last_merchant_by_currency@1"), feature("first_merchant_by_currency@1")
	bruteForce := func(f *config.Feature, key string, at int64) map[string]*string {
		groups := aggtest.BucketGroups(f.Window, evs[key], at, f.MaxBuckets)
		if len(groups) == 0 {
			return nil // last, first: an empty window is null
		}
		m := map[string]*string{}
		for b, g := range groups {
			if s, ok := aggtest.BruteForceString(f.Aggregation, f.Window, g, at); ok {
				m[b] = &s
			} else {
				m[b] = nil
			}
		}
		return m
	}
	var log []*kgo.Record
	rows, folded, nulls := 0, 0, 0
	for at := now - 6*aggregations.Day; at < now; at += 3*aggregations.Hour + 7 { // from before the first event: null maps too
		for u := range users {
			key := fmt.Sprintf("user-%d", u)
			e := &lookuplog.Entry{Entity: "user", Key: key, At: at, Features: map[string]*float64{},
				BucketStrings: map[string]map[string]*string{
					last.ID: bruteForce(last, key, at), first.ID: bruteForce(first, key, at)}}
			lm := e.BucketStrings[last.ID]
			if _, ok := lm[aggregations.OtherBucket]; ok {
				folded++
			}
			if lm == nil {
				nulls++
			}
			rows++
			switch rows {
			case 40: // one character of one bucket's string added
				b := anyBucket(t, lm, key, at)
				x := *lm[b] + "!"
				lm[b] = &x
			case 50: // a bucket left out
				delete(lm, anyBucket(t, lm, key, at))
			case 60: // the map served null
				anyBucket(t, e.BucketStrings[first.ID], key, at)
				e.BucketStrings[first.ID] = nil
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			log = append(log, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte(key), Value: b, Timestamp: time.UnixMilli(at)})
		}
	}
	if folded == 0 || nulls == 0 {
		t.Fatalf("test data: %d maps with %s and %d null maps of %s, want some of each", folded, aggregations.OtherBucket, nulls, last.ID)
	}
	if err := cl.ProduceSync(ctx, log...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Examples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != int64(rows) || rep.Compared != int64(rows*2) || rep.Mismatches != 3 {
		t.Fatalf("%d entries, %d compared, %d mismatches; want %d, %d, 3:\n%s", rep.Entries, rep.Compared, rep.Mismatches, rows, rows*2, text(rep))
	}
	lf := rep.Feature(last.ID)
	if lf == nil || !lf.Buckets || !lf.String || lf.Mismatches != 2 || lf.NullMismatches != 0 || len(lf.Examples) != 2 {
		t.Fatalf("%s: %+v", last.ID, lf)
	}
	if ex := lf.Examples[0]; len(ex.ServedBucketStrings) != len(ex.RecomputedBucketStrings) || !oneAppended(ex.ServedBucketStrings, ex.RecomputedBucketStrings) {
		t.Errorf("%s example %+v: served must be recomputed with one bucket's string plus \"!\"", last.ID, ex)
	}
	if ex := lf.Examples[1]; len(ex.ServedBucketStrings) != len(ex.RecomputedBucketStrings)-1 {
		t.Errorf("%s example %+v: served must miss one bucket", last.ID, ex)
	}
	ff := rep.Feature(first.ID)
	if ff == nil || !ff.Buckets || !ff.String || ff.Mismatches != 1 || ff.NullMismatches != 1 || len(ff.Examples) != 1 ||
		ff.Examples[0].ServedBucketStrings != nil || ff.Examples[0].RecomputedBucketStrings == nil {
		t.Fatalf("%s: %+v", first.ID, ff)
	}
	if s := text(rep); !strings.Contains(s, `!"`) {
		t.Errorf("the text report does not show the tampered string:\n%s", s)
	}
}

// anyBucket is the smallest bucket of m that has a string; it fails the
// test when there is none.
func anyBucket(t *testing.T, m map[string]*string, key string, at int64) string {
	t.Helper()
	best := ""
	for b, s := range m {
		if s != nil && (best == "" || b < best) {
			best = b
		}
	}
	if best == "" {
		t.Fatalf("test data: no bucket with a string for %s at %d (%v), want one to tamper with", key, at, m)
	}
	return best
}

// oneAppended reports whether served is recomputed with exactly one
// bucket's string followed by "!".
func oneAppended(served, recomputed map[string]*string) bool {
	n := 0
	for b, s := range served {
		r, ok := recomputed[b]
		switch {
		case !ok || (s == nil) != (r == nil):
			return false
		case s != nil && *s == *r+"!":
			n++
		case s != nil && *s != *r:
			return false
		}
	}
	return n == 1
}
