package skew_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

const shopSchema = `{"type": "record", "name": "Shop", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant", "type": "string"},
  {"name": "ts", "type": "long"}]}`

// stringFile has a last and a last_k of a string field, and a count of the
// same entity.
var stringFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: shops
    topic: shops-{{ID}}
    schema: shop.avsc
    event_time: ts
features:
  - {name: last_merchant, version: 1, entity: user, source: shops, aggregation: last, field: merchant, window: 2d, owner: t, description: d}
  - {name: merchants3, version: 1, entity: user, source: shops, aggregation: last_k, k: 3, field: merchant, window: lifetime, owner: t, description: d}
  - {name: shops_1d, version: 1, entity: user, source: shops, aggregation: count, window: 1d, owner: t, description: d}
`

// TestSkewComparesStrings: string features served in the lookup log's
// "strings" and "string_lists" are compared with the backfill's recomputed
// strings exactly. Served values built by brute force give no mismatch; a
// tampered string (one character changed), a tampered list element and a
// string served null are reported, with examples carrying both values.
func TestSkewComparesStrings(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, stringFile, testkit.SetupOptions{Files: map[string]string{"shop.avsc": shopSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "shops")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 3))
	now := time.Now().Add(-time.Minute).UnixMilli()
	const users = 5
	merchants := []string{"m-1", "m-2", "café ☕", `quote " and \ backslash`, ""}
	evs := map[string][]aggregations.Event{}
	var recs []*kgo.Record
	var keys []string
	var shops []aggregations.Event
	for range 300 {
		key := fmt.Sprintf("user-%d", rng.IntN(users))
		ts := now - 1000 - rng.Int64N(5*aggregations.Day)
		m := merchants[rng.IntN(len(merchants))]
		r, err := enc.Record(map[string]any{"user_id": key, "merchant": m, "ts": ts})
		if err != nil {
			t.Fatal(err)
		}
		recs, keys, shops = append(recs, r), append(keys, key), append(shops, aggregations.Event{TS: ts, Str: m})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		e := shops[i]
		e.Seq = aggregations.Seq(r.Partition, r.Offset)
		evs[keys[i]] = append(evs[keys[i]], e)
	}
	feature := func(id string) *configFeature {
		f, err := cfg.Feature(id)
		if err != nil {
			t.Fatal(err)
		}
		return &configFeature{f.ID, f.Aggregation, f.Window}
	}
	last, list, count := feature("last_merchant@1"), feature("merchants3@1"), feature("shops_1d@1")
	type lookup struct {
		key string
		at  int64
	}
	tampered := map[lookup]bool{}
	var log []*kgo.Record
	rows := 0
	for at := now - 4*aggregations.Day; at < now; at += 3*aggregations.Hour + 7 {
		for u := range users {
			key := fmt.Sprintf("user-%d", u)
			e := &lookuplog.Entry{Entity: "user", Key: key, At: at, Features: map[string]*float64{},
				Strings: map[string]*string{}, StringLists: map[string][]string{}}
			c, _ := aggtest.BruteForce(count.kind, count.window, evs[key], at)
			e.Features[count.id] = &c
			if s, ok := aggtest.BruteForceString(last.kind, last.window, evs[key], at); ok {
				e.Strings[last.id] = &s
			} else {
				e.Strings[last.id] = nil
			}
			l, ok := aggtest.BruteForceStringList(list.kind, list.window, evs[key], at)
			if !ok {
				l = nil
			}
			e.StringLists[list.id] = l
			rows++
			switch rows {
			case 40: // one character of a string changed
				s := e.Strings[last.id]
				if s == nil {
					t.Fatalf("test data: last_merchant of %s at %d is null, want a string to tamper with", key, at)
				}
				x := *s + "!"
				e.Strings[last.id] = &x
				tampered[lookup{key, at}] = true
			case 50: // a list element changed
				if len(l) < 2 {
					t.Fatalf("test data: merchants3 of %s at %d has %d elements, want 2 or more", key, at, len(l))
				}
				l[1] = "tampered"
				tampered[lookup{key, at}] = true
			case 60: // a string served null
				if e.Strings[last.id] == nil {
					t.Fatalf("test data: last_merchant of %s at %d is null, want a string to tamper with", key, at)
				}
				e.Strings[last.id] = nil
				tampered[lookup{key, at}] = true
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			log = append(log, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte(key), Value: b, Timestamp: time.UnixMilli(at)})
		}
	}
	if err := cl.ProduceSync(ctx, log...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != int64(rows) || rep.Compared != int64(rows*3) || rep.Mismatches != 3 {
		t.Fatalf("%d entries, %d compared, %d mismatches; want %d, %d, 3:\n%s", rep.Entries, rep.Compared, rep.Mismatches, rows, rows*3, text(rep))
	}
	lf := rep.Feature(last.id)
	if lf == nil || !lf.String || lf.List || lf.Mismatches != 2 || lf.NullMismatches != 1 || len(lf.Examples) != 2 {
		t.Fatalf("last_merchant: %+v", lf)
	}
	if ex := lf.Examples[0]; ex.ServedString == nil || ex.RecomputedString == nil || *ex.ServedString != *ex.RecomputedString+"!" {
		t.Errorf("last_merchant example %+v: served must be recomputed plus \"!\"", ex)
	}
	if ex := lf.Examples[1]; ex.ServedString != nil || ex.RecomputedString == nil {
		t.Errorf("last_merchant example %+v: served null against a string", ex)
	}
	mf := rep.Feature(list.id)
	if mf == nil || !mf.String || !mf.List || mf.Mismatches != 1 || mf.NullMismatches != 0 || len(mf.Examples) != 1 {
		t.Fatalf("merchants3: %+v", mf)
	}
	if ex := mf.Examples[0]; len(ex.ServedStrings) != len(ex.RecomputedStrings) || ex.ServedStrings[1] != "tampered" ||
		!slices.Equal(ex.ServedStrings[:1], ex.RecomputedStrings[:1]) {
		t.Errorf("merchants3 example %+v: served must be recomputed with element 1 replaced", ex)
	}
	if f := rep.Feature(count.id); f == nil || f.Mismatches != 0 || f.Rows != int64(rows) {
		t.Fatalf("%s: %+v, want %d rows without mismatch", count.id, f, rows)
	}
	if s := text(rep); !strings.Contains(s, `"tampered"`) {
		t.Errorf("the text report does not show the string lists of the example:\n%s", s)
	}

	// Without the tampered entries, the correct pipeline shows no skew.
	clean, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg,
		Keep: func(e *lookuplog.Entry) bool { return !tampered[lookup{e.Key, e.At}] }})
	if err != nil {
		t.Fatal(err)
	}
	if clean.Mismatches != 0 || clean.Compared != int64((rows-3)*3) || clean.Err() != nil {
		t.Fatalf("untampered: %d mismatches of %d compared, want 0 of %d:\n%s", clean.Mismatches, clean.Compared, (rows-3)*3, text(clean))
	}
}

// configFeature is what the test needs of a feature definition.
type configFeature struct {
	id     string
	kind   aggregations.Kind
	window aggregations.Window
}
