package skew_test

import (
	"context"
	"errors"
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
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

const visitSchema = `{"type": "record", "name": "Visit", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "card", "type": "long"},
  {"name": "flag", "type": "boolean"},
  {"name": "ts", "type": "long"}]}`

// listFile has list features of a double, a long and a boolean field, and
// a number feature of the same entity.
var listFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: amounts3, version: 1, entity: user, source: visits, aggregation: last_k, k: 3, field: amount, window: 7d, hop: 6h, owner: t, description: d}
  - {name: cards4, version: 1, entity: user, source: visits, aggregation: first_k, k: 4, field: card, window: 2d, owner: t, description: d}
  - {name: flags2, version: 1, entity: user, source: visits, aggregation: last_k, k: 2, field: flag, window: lifetime, owner: t, description: d}
  - {name: visits_1d, version: 1, entity: user, source: visits, aggregation: count, window: 1d, owner: t, description: d}
`

// TestSkewComparesLists: list features (first_k, last_k of a double, a long
// near 2^53 and a boolean) served in the lookup log's "lists" are compared
// with the backfill's recomputed lists element by element. Served lists
// built by brute force from what had arrived by each lookup give no
// mismatch in arrival mode; a tampered element (one long off by 1, exact
// comparison) and a list served null are reported, with examples carrying
// both lists, next to the number feature compared as before.
func TestSkewComparesLists(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, listFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.Now().Add(-time.Minute).UnixMilli()
	const users = 6
	type visit struct {
		ev      map[string]aggregations.Event // by field
		arrival int64
	}
	byKey := map[string][]visit{}
	var recs []*kgo.Record
	var keys []string
	var vals []map[string]float64
	var times [][2]int64
	for range 600 {
		key := fmt.Sprintf("user-%d", rng.IntN(users))
		ts := now - 1000 - rng.Int64N(8*aggregations.Day)
		arrival := min(ts+rng.Int64N(aggregations.Minute), now-1)
		if rng.IntN(4) == 0 {
			arrival = min(ts+rng.Int64N(aggregations.Day), now-1)
		}
		amount, card, flag := float64(rng.IntN(100_000))/100, int64(1<<53)-rng.Int64N(1000), rng.IntN(2) == 0
		r, err := enc.Record(map[string]any{"user_id": key, "amount": amount, "card": card, "flag": flag, "ts": ts})
		if err != nil {
			t.Fatal(err)
		}
		r.Timestamp = time.UnixMilli(arrival)
		b := 0.0
		if flag {
			b = 1
		}
		recs, keys = append(recs, r), append(keys, key)
		vals = append(vals, map[string]float64{"amount": amount, "card": float64(card), "flag": b})
		times = append(times, [2]int64{ts, arrival})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		v := visit{ev: map[string]aggregations.Event{}, arrival: times[i][1]}
		for field, x := range vals[i] {
			v.ev[field] = aggregations.Event{TS: times[i][0], Seq: aggregations.Seq(r.Partition, r.Offset), Value: x}
		}
		byKey[keys[i]] = append(byKey[keys[i]], v)
	}
	// arrived returns key's events of field that had arrived by at.
	arrived := func(key, field string, at int64) []aggregations.Event {
		var out []aggregations.Event
		for _, v := range byKey[key] {
			if v.arrival <= at {
				out = append(out, v.ev[field])
			}
		}
		return out
	}

	listIDs := []string{"amounts3@1", "cards4@1", "flags2@1"}
	count, err := cfg.Feature("visits_1d@1")
	if err != nil {
		t.Fatal(err)
	}
	var log []*kgo.Record
	var rows, full int
	tamperedKey := ""
	var tamperedAt int64
	type lookup struct {
		key string
		at  int64
	}
	tampered := map[lookup]bool{}
	for at := now - 6*aggregations.Day; at < now; at += 5*aggregations.Hour + 13 {
		for u := range users {
			key := fmt.Sprintf("user-%d", u)
			e := &lookuplog.Entry{Entity: "user", Key: key, At: at, Features: map[string]*float64{}, Lists: map[string][]float64{}}
			if c, ok := aggtest.BruteForce(count.Aggregation, count.Window, arrived(key, "amount", at), at); ok {
				e.Features[count.ID] = &c
			} else {
				e.Features[count.ID] = nil
			}
			for _, id := range listIDs {
				f, err := cfg.Feature(id)
				if err != nil {
					t.Fatal(err)
				}
				l, ok := aggtest.BruteForceList(f.Aggregation, f.Window, arrived(key, f.Field, at), at)
				if !ok {
					l = nil
				}
				if len(l) == f.K {
					full++
				}
				e.Lists[id] = l
			}
			rows++
			switch rows {
			case 60: // one long element off by one
				l := e.Lists["cards4@1"]
				if len(l) < 2 {
					t.Fatalf("test data: cards4 of %s at %d has %d elements, want 2 or more to tamper with", key, at, len(l))
				}
				l[1]++
				tamperedKey, tamperedAt = key, at
				tampered[lookup{key, at}] = true
			case 80: // a list served null
				if e.Lists["amounts3@1"] == nil {
					t.Fatalf("test data: amounts3 of %s at %d is null, want a list to tamper with", key, at)
				}
				e.Lists["amounts3@1"] = nil
				tampered[lookup{key, at}] = true
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			log = append(log, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte(key), Value: b, Timestamp: time.UnixMilli(at)})
		}
	}
	if full == 0 {
		t.Fatal("test data: no served list reached k elements")
	}
	if rows < 80 {
		t.Fatalf("test data: %d rows, want at least 80 to tamper with", rows)
	}
	if err := cl.ProduceSync(ctx, log...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != int64(rows) || rep.Compared != int64(rows*(len(listIDs)+1)) || rep.Mismatches != 2 {
		t.Fatalf("%d entries, %d compared, %d mismatches; want %d, %d, 2:\n%s", rep.Entries, rep.Compared, rep.Mismatches, rows, rows*(len(listIDs)+1), text(rep))
	}
	if !errors.Is(rep.Err(), skew.ErrMismatch) {
		t.Fatalf("Err() = %v, want ErrMismatch", rep.Err())
	}
	cards := rep.Feature("cards4@1")
	if cards == nil || !cards.List || cards.Mismatches != 1 || cards.NullMismatches != 0 || cards.MaxAbsDiff != 1 || len(cards.Examples) != 1 {
		t.Fatalf("cards4: %+v", cards)
	}
	if ex := cards.Examples[0]; ex.Key != tamperedKey || ex.At != tamperedAt || len(ex.ServedList) != len(ex.RecomputedList) ||
		ex.ServedList[1] != ex.RecomputedList[1]+1 || !slices.Equal(ex.ServedList[:1], ex.RecomputedList[:1]) {
		t.Fatalf("cards4 example %+v: served must be recomputed with element 1 plus one", ex)
	}
	amounts := rep.Feature("amounts3@1")
	if amounts == nil || amounts.Mismatches != 1 || amounts.NullMismatches != 1 || amounts.Examples[0].ServedList != nil || amounts.Examples[0].RecomputedList == nil {
		t.Fatalf("a null list against a list is a mismatch: %+v", amounts)
	}
	for _, id := range []string{"flags2@1", count.ID} {
		if f := rep.Feature(id); f == nil || f.Mismatches != 0 || f.Rows != int64(rows) {
			t.Fatalf("%s: %+v, want %d rows without mismatch", id, f, rows)
		}
	}
	if s := text(rep); !strings.Contains(s, fmt.Sprintf("[%d,", int64(cards.Examples[0].ServedList[0]))) {
		t.Errorf("the text report does not show the lists of the example:\n%s", s)
	}

	// Without the two tampered entries, the correct pipeline shows no skew.
	clean, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival,
		Keep: func(e *lookuplog.Entry) bool { return !tampered[lookup{e.Key, e.At}] }})
	if err != nil {
		t.Fatal(err)
	}
	if clean.Mismatches != 0 || clean.Compared != int64((rows-2)*(len(listIDs)+1)) || clean.Err() != nil {
		t.Fatalf("untampered: %d mismatches of %d compared, want 0 of %d:\n%s", clean.Mismatches, clean.Compared, (rows-2)*(len(listIDs)+1), text(clean))
	}
}
