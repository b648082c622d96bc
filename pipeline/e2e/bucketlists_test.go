package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

// bucketListFile has bucketed list features: a last_k of a number field
// and a last_k of a string field (both max_buckets 2, folding into
// __other__) and a top_k of a string field.
var bucketListFile = testkit.KafkaSection(4) + testkit.UserTransactions + `features:
  - {name: last_amounts_by_currency, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: currency, max_buckets: 2, window: 7d, hop: 6h, owner: t, description: d}
  - {name: last_merchants_by_currency, version: 1, entity: user, source: transactions, aggregation: last_k, k: 2, field: merchant_id, bucket: currency, max_buckets: 2, window: 7d, owner: t, description: d}
  - {name: top_merchants_by_currency, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: merchant_id, bucket: currency, window: lifetime, owner: t, description: d}
`

// bucketListNames are the features of bucketListFile.
var bucketListNames = []string{"last_amounts_by_currency", "last_merchants_by_currency", "top_merchants_by_currency"}

// wantBucketList is the brute force of bucketed list feature f (by
// currency) over evs (Bucket "currency|merchant", Str the merchant, as
// produceBucketTxns records them) as of T, as the canonical JSON of the
// value the lookup serves: null for an unknown key or an empty window,
// else an object from bucket to BruteForceList, BruteForceStringList or
// BruteForceTopK over that bucket's events (aggtest.BucketGroups).
func wantBucketList(t *testing.T, f *config.Feature, evs []aggregations.Event, T int64, known bool) string {
	t.Helper()
	if !known {
		return "null"
	}
	split := make([]aggregations.Event, len(evs))
	for i, e := range evs {
		e.Bucket, _, _ = strings.Cut(e.Bucket, "|")
		split[i] = e
	}
	groups := aggtest.BucketGroups(f.Window, split, T, f.MaxBuckets)
	if len(groups) == 0 {
		return "null"
	}
	m := map[string]any{}
	for k, g := range groups {
		switch {
		case f.Aggregation == aggregations.TopK:
			typed := make([]aggtest.Typed[string], len(g))
			for i, e := range g {
				typed[i] = aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str}
			}
			top, _ := aggtest.BruteForceTopK(f.Window, typed, T, f.Window.K())
			l := make([]map[string]any, len(top))
			for i, c := range top {
				l[i] = map[string]any{"value": c.Value, "count": c.Count}
			}
			m[k] = l
		case f.Window.Strings():
			m[k], _ = aggtest.BruteForceStringList(f.Aggregation, f.Window, g, T)
		default:
			m[k], _ = aggtest.BruteForceList(f.Aggregation, f.Window, g, T)
		}
	}
	return canonical(t, mustJSON(t, m))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canonical re-marshals JSON text through any: equal values, equal text.
func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return string(mustJSON(t, v))
}

// rawLookup is a lookup answer with each value's JSON text.
type rawLookup struct {
	AsOf    time.Time `json:"as_of"`
	Results []struct {
		Key      string `json:"key"`
		Features map[string]struct {
			Value  json.RawMessage `json:"value"`
			Status string          `json:"status"`
		} `json:"features"`
	} `json:"results"`
}

// TestBucketedListFeaturesThroughWorkerLookupAndSkew runs a bucketed
// last_k of a number, a bucketed last_k of a string field (both folding
// into __other__) and a bucketed top_k of a string field through a real
// worker and the lookup service, and checks every answer against the
// brute force (aggtest.BucketGroups, then BruteForceList,
// BruteForceStringList, BruteForceTopK per bucket): an empty window (null)
// and an unknown key (null, NOT_FOUND) included. A replica cold-started
// from the worker's snapshot serves the same maps. The lookup log carries
// the maps in bucket_lists, bucket_string_lists and bucket_tops, and
// `skew` replays it through backfill with 0 mismatches; a tampered entry
// (one bucket of each feature changed) is exactly one mismatch per
// feature, with both values as its example. Backfill answers the lookup's
// maps at the same T and the brute force at other times.
func TestBucketedListFeaturesThroughWorkerLookupAndSkew(t *testing.T) {
	k, cfg, cl := setup(t, bucketListFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	var txns []bucketTxn
	curs := []string{"EUR", "USD", "EUR", "GBP", "EUR", "USD", "CHF"}
	for i := range 28 { // produced out of event-time order
		txns = append(txns, bucketTxn{"many", curs[i%len(curs)], fmt.Sprintf("m%d", i%3+i%2), ms(time.Duration(i*11%28) * 5 * time.Hour), float64(i%9) + 0.25})
	}
	txns = append(txns,
		bucketTxn{"many", "JPY", "m9", ms(2 * time.Hour), 100}, bucketTxn{"many", "JPY", "m8", ms(2 * time.Hour), 101}, // a tie on event time
		bucketTxn{"few", "EUR", "café ☕", ms(3 * time.Hour), 7},
		bucketTxn{"old", "USD", "m2", ms(20 * 24 * time.Hour), 9})
	produceBucketTxns(t, ctx, cl, cfg, txns, p)
	dir := t.TempDir()
	store, _ := newSnapshotStore(t, dir)
	w := snapshottingWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"), store)
	ls, fullSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "view"), nil)
	keys := []string{"many", "few", "old", "nobody"}
	calls := 0 // answered lookups, each logging every key
	check := func(url string) (bad []string, resp rawLookup) {
		if code := postJSON(t, url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": bucketListNames}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}, resp
		}
		calls++
		T := resp.AsOf.UnixMilli()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range resp.Results {
			known := p.knownLocked("user", r.Key, T)
			for _, name := range bucketListNames {
				f, _ := cfg.Feature(name)
				want := wantBucketList(t, f, p.events["transactions"][r.Key], T, known)
				got := r.Features[name]
				status := lookup.StatusPresent
				switch {
				case !known:
					status = lookup.StatusNotFound
				case want == "null":
					status = lookup.StatusEmptyWindow
				}
				if g := canonical(t, got.Value); g != want || got.Status != status {
					bad = append(bad, fmt.Sprintf("%s %s: %s %s, want %s %s", r.Key, name, got.Status, g, status, want))
				}
			}
		}
		return bad, resp
	}
	var bad []string
	var resp rawLookup
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if bad, resp = check(ls.url); len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 90s: %v", bad)
		}
	}
	T := resp.AsOf.UnixMilli()
	servedOf := func(key, name string) json.RawMessage {
		for _, r := range resp.Results {
			if r.Key == key {
				return r.Features[name].Value
			}
		}
		return nil
	}
	var reached []string
	for _, name := range bucketListNames {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(servedOf("many", name), &m); err != nil {
			t.Fatal(err)
		}
		if f, _ := cfg.Feature(name); f.MaxBuckets == 2 {
			if _, ok := m[aggregations.OtherBucket]; !ok || len(m) != 3 {
				t.Errorf("many %s = %v: want 2 buckets and %s", name, m, aggregations.OtherBucket)
			}
		}
		if string(servedOf("old", name)) == "null" {
			reached = append(reached, "null/"+name)
		}
	}
	if len(reached) != 2 { // old's event is 20 days old: outside the 7d windows, inside lifetime
		t.Errorf("old: null in %v, want the two 7d features", reached)
	}

	// A replica cold-started from a snapshot taken now (nothing is produced
	// after it) serves the same maps: the snapshot carries the bucketed
	// lists' tiles.
	takeSnapshot(t, w)
	cold, coldSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "cold"), store)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if bad, _ = check(cold.url); len(bad) == 0 && cold.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica started from the snapshot differs from the brute force after 60s: %v", bad)
		}
	}
	if replayed, all := testutil.ToFloat64(coldSvc.Metrics().LogRecords), testutil.ToFloat64(fullSvc.Metrics().LogRecords); replayed >= all {
		t.Errorf("the cold replica replayed %v feature-log records, the full one %v: the snapshot was not used", replayed, all)
	}

	// The log carries every served map in its section; skew replays the
	// entries as of T (the keys, and one tampered copy of many's).
	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), 60*time.Second)
	ids := map[string]string{}
	for _, name := range bucketListNames {
		f, _ := cfg.Feature(name)
		ids[name] = f.ID
	}
	tampered := &lookuplog.Entry{Entity: "user", Key: "many", At: T, Features: map[string]*float64{},
		BucketLists: map[string]map[string][]float64{}, BucketStringLists: map[string]map[string][]string{}, BucketTops: map[string]map[string]*lookuplog.ServedTop{}}
	var lists map[string][]float64
	if err := json.Unmarshal(servedOf("many", "last_amounts_by_currency"), &lists); err != nil {
		t.Fatal(err)
	}
	lists["EUR"][0]++
	tampered.BucketLists[ids["last_amounts_by_currency"]] = lists
	var strs map[string][]string
	if err := json.Unmarshal(servedOf("many", "last_merchants_by_currency"), &strs); err != nil {
		t.Fatal(err)
	}
	strs[aggregations.OtherBucket] = append(strs[aggregations.OtherBucket], "m-extra")
	tampered.BucketStringLists[ids["last_merchants_by_currency"]] = strs
	var tops map[string]json.RawMessage
	if err := json.Unmarshal(servedOf("many", "top_merchants_by_currency"), &tops); err != nil {
		t.Fatal(err)
	}
	tm := map[string]*lookuplog.ServedTop{}
	for b, text := range tops {
		if b == "USD" {
			text = bytes.Replace(text, []byte(`"count":`), []byte(`"count":1`), 1) // the first count, times ten plus one
		}
		tm[b] = &lookuplog.ServedTop{Value: text}
	}
	tampered.BucketTops[ids["top_merchants_by_currency"]] = tm
	val, err := tampered.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("many"), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	logged := map[string]int{}
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival, Examples: 3,
		Keep: func(e *lookuplog.Entry) bool {
			if e.At != T {
				return false
			}
			for id := range e.BucketLists {
				logged[id]++
			}
			for id := range e.BucketStringLists {
				logged[id]++
			}
			for id := range e.BucketTops {
				logged[id]++
			}
			return true
		}})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("skew:\n%s", text.String())
	for _, name := range bucketListNames {
		id := ids[name]
		if logged[id] != len(keys)+1 {
			t.Errorf("%d entries as of T carry %s, want %d (the keys and the tampered entry)", logged[id], id, len(keys)+1)
		}
		fr := rep.Feature(id)
		if fr == nil || !fr.Buckets || fr.Rows != int64(len(keys)+1) || fr.Mismatches != 1 || fr.NullMismatches != 0 || len(fr.Examples) != 1 {
			t.Errorf("skew of %s: %+v, want %d rows (the keys and the tampered entry), 1 mismatch", name, fr, len(keys)+1)
			continue
		}
		ex := fr.Examples[0]
		var s, r []byte
		switch {
		case fr.Top:
			s, r = mustJSON(t, ex.ServedBucketTops), mustJSON(t, ex.RecomputedBucketTops)
		case fr.String:
			s, r = mustJSON(t, ex.ServedBucketStringLists), mustJSON(t, ex.RecomputedBucketStringLists)
		default:
			s, r = mustJSON(t, ex.ServedBucketLists), mustJSON(t, ex.RecomputedBucketLists)
		}
		if ex.Key != "many" || string(s) == "null" || canonical(t, r) != canonical(t, servedOf("many", name)) || canonical(t, s) == canonical(t, r) {
			t.Errorf("skew example of %s: served %s, recomputed %s; want many's tampered map and the one served (%s)", name, s, r, servedOf("many", name))
		}
	}
	if rep.Mismatches != int64(len(bucketListNames)) {
		t.Errorf("skew: %d mismatches, want %d (one per feature, in the tampered entry)", rep.Mismatches, len(bucketListNames))
	}

	// Backfill answers the same maps as of the lookup's T, and the brute
	// force at other times (empty windows and unknown keys included).
	var points []backfill.Point
	for _, key := range keys {
		for _, at := range []int64{T, ms(48 * time.Hour), ms(8 * 24 * time.Hour), ms(2*time.Hour) + 1, ms(30 * 24 * time.Hour)} {
			points = append(points, backfill.Point{Key: key, T: at})
		}
	}
	v, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: bucketListNames}, points)
	if err != nil {
		t.Fatal(err)
	}
	nulls := 0
	p.mu.Lock()
	defer p.mu.Unlock()
	for row, pt := range points {
		for col, name := range bucketListNames {
			f, _ := cfg.Feature(name)
			cells, ok := v.Buckets(row, col)
			got := "null"
			if ok {
				m := map[string]any{}
				for _, c := range cells {
					switch {
					case f.Aggregation == aggregations.TopK:
						l := make([]map[string]any, len(c.Top))
						for i, x := range c.Top {
							l[i] = map[string]any{"value": x.Str, "count": x.Count}
						}
						m[c.Key] = l
					case f.Window.Strings():
						m[c.Key] = c.Strs
					default:
						m[c.Key] = c.List
					}
				}
				got = canonical(t, mustJSON(t, m))
			}
			want := wantBucketList(t, f, p.events["transactions"][pt.Key], pt.T, p.knownLocked("user", pt.Key, pt.T))
			if got != want {
				t.Errorf("backfill %s at T%+d: %s = %s, want %s", pt.Key, pt.T-T, name, got, want)
			}
			if pt.T == T && got != canonical(t, servedOf(pt.Key, name)) {
				t.Errorf("%s %s: lookup %s, backfill %s at the same T", pt.Key, name, servedOf(pt.Key, name), got)
			}
			if got == "null" {
				nulls++
			}
		}
	}
	if nulls == 0 || nulls == len(points)*len(bucketListNames) {
		t.Errorf("backfill: %d null maps of %d, want some and not all", nulls, len(points)*len(bucketListNames))
	}
}
