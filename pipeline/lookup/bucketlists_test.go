package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// bucketListFeatures are the bucketed list features bucketListConfig adds:
// first_k and last_k of a number field, last_k of a string field, top_k of
// a string and of a number field, with max_buckets small enough that the
// fixture folds buckets into __other__.
var bucketListFeatures = []string{"first_amounts_by_cur", "last_amounts_by_cur_30d", "last_merchants_by_cur_7d", "top_merchants_by_cur", "top_amounts_by_cur_30d"}

// bucketListConfig is the test feature file with bucketListFeatures.
func bucketListConfig(t *testing.T) *config.File {
	t.Helper()
	data, err := os.ReadFile("testdata/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte(`  - {name: first_amounts_by_cur, version: 1, entity: user, source: transactions, aggregation: first_k, k: 2, field: amount, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: last_amounts_by_cur_30d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: currency, max_buckets: 3, window: 30d, owner: t, description: d}
  - {name: last_merchants_by_cur_7d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: merchant_id, bucket: currency, max_buckets: 2, window: 7d, hop: 6h, owner: t, description: d}
  - {name: top_merchants_by_cur, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: merchant_id, bucket: currency, max_buckets: 3, window: lifetime, owner: t, description: d}
  - {name: top_amounts_by_cur_30d, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: amount, bucket: currency, max_buckets: 2, window: 30d, owner: t, description: d}
`)...)
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "features.yaml"), data, os.DirFS("/"), strings.TrimPrefix(filepath.ToSlash(dir), "/"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// bucketListEvents are the fixture's events (out of order in time) with a
// currency bucket from six (more than any max_buckets above), a merchant
// from four and an amount from five values, so that the top_k counts and
// the lists' ties on value mean something.
func bucketListEvents(T int64) fixtureEvents {
	events := fixtureData(T)
	currencies := []string{"EUR", "USD", "GBP", "CHF", "EUR", "JPY", "EUR", "SEK", "USD"}
	for _, evs := range events["transactions"] {
		for i := range evs {
			e := &evs[i]
			e.Bucket = currencies[e.Seq%int64(len(currencies))]
			e.Str = fmt.Sprintf("m-%d", e.Seq%4)
			e.Value = float64(e.Seq%5) + 0.5
		}
	}
	return events
}

// bucketListFixture is the lookup fixture over bucketListConfig and
// bucketListEvents.
func bucketListFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := bucketListConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := bucketListEvents(T)
	writeView(t, st, cfg, events, T)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }, LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(map[int32]int64{}, nil)
	svc.registryCaughtUp()
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}
}

// bruteBucketList is the value of a bucketed list feature (first_k, last_k,
// top_k) of evs as of T by definition, as the JSON the lookup writes: a map
// from bucket key to the brute force of the kind over that bucket's
// events (aggtest.BucketGroups, then BruteForceList, BruteForceStringList
// or BruteForceTopK), null for an empty window.
func bruteBucketList(t *testing.T, f *config.Feature, evs []aggregations.Event, T int64) string {
	t.Helper()
	groups := aggtest.BucketGroups(f.Window, evs, T, f.MaxBuckets)
	if len(groups) == 0 {
		return "null"
	}
	m := make(map[string]any, len(groups))
	for key, g := range groups {
		var v any
		var ok bool
		switch {
		case f.Aggregation == aggregations.TopK && f.Window.Strings():
			typed := make([]aggtest.Typed[string], len(g))
			for i, e := range g {
				typed[i] = aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str}
			}
			var top []aggtest.Counted[string]
			top, ok = aggtest.BruteForceTopK(f.Window, typed, T, f.Window.K())
			v = topJSONOf(top)
		case f.Aggregation == aggregations.TopK:
			typed := make([]aggtest.Typed[float64], len(g))
			for i, e := range g {
				typed[i] = aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value}
			}
			var top []aggtest.Counted[float64]
			top, ok = aggtest.BruteForceTopK(f.Window, typed, T, f.Window.K())
			v = topJSONOf(top)
		case f.Window.Strings():
			v, ok = aggtest.BruteForceStringList(f.Aggregation, f.Window, g, T)
		default:
			v, ok = aggtest.BruteForceList(f.Aggregation, f.Window, g, T)
		}
		if !ok {
			t.Fatalf("%s: bucket %s has events but no brute-force value", f.Name, key)
		}
		m[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// topJSONOf is a brute-force top_k as the JSON the lookup writes for it.
func topJSONOf[V any](top []aggtest.Counted[V]) []map[string]any {
	out := make([]map[string]any, len(top))
	for i, c := range top {
		out[i] = map[string]any{"value": c.Value, "count": c.Count}
	}
	return out
}

// canonicalJSON re-marshals raw through any, so that two JSON texts of the
// same value compare equal (object keys sorted, numbers as encoding/json
// writes float64s).
func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLookupServesBucketedLists: a bucketed first_k, last_k (of numbers and
// of strings) and top_k is a JSON object from bucket to the kind's list,
// equal to the brute force (aggtest.BucketGroups, then the kind's brute
// force per bucket) over events applied out of order, with max_buckets
// folding the least-populated buckets into __other__; an empty window is
// null (as every kind whose empty window is not 0) and an unknown entity
// NOT_FOUND with null. GET, POST and Feast's endpoint agree, and a value
// read back through FeatureValue re-writes to the same JSON.
func TestLookupServesBucketedLists(t *testing.T) {
	fx := bucketListFixture(t)
	keys := []string{"u1", "u2", "42", "nobody"}
	body, _ := json.Marshal(map[string]any{"entity": "user", "keys": keys, "features": bucketListFeatures})
	rec := fx.do(t, "POST", "/v1/lookup", string(body))
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var raw struct {
		Results []struct {
			Key      string `json:"key"`
			Features map[string]struct {
				Value  json.RawMessage `json:"value"`
				Status string          `json:"status"`
			} `json:"features"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil || len(raw.Results) != len(keys) {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode into LookupResponse: %v", err)
	}
	seen := map[string]bool{}
	for i, r := range raw.Results {
		for _, name := range bucketListFeatures {
			f, err := fx.cfg.Feature(name)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Features[name]
			want := fx.expect(t, f, r.Key)
			if got.Status != want.status {
				t.Errorf("%s of %s: status %s, want %s", name, r.Key, got.Status, want.status)
			}
			wantJSON := "null"
			if want.status != StatusNotFound {
				wantJSON = bruteBucketList(t, f, fx.events[f.Source][r.Key], fx.T)
			}
			if g := canonicalJSON(t, got.Value); g != wantJSON {
				t.Errorf("%s of %s:\n got   %s\n brute %s", name, r.Key, g, wantJSON)
			}
			// FeatureValue reads the map back and writes it again unchanged.
			fv := resp.Results[i].Features[name]
			again, err := json.Marshal(fv)
			if err != nil {
				t.Fatal(err)
			}
			var back struct {
				Value json.RawMessage `json:"value"`
			}
			if err := json.Unmarshal(again, &back); err != nil || canonicalJSON(t, back.Value) != canonicalJSON(t, got.Value) {
				t.Errorf("%s of %s: FeatureValue re-writes %s, served %s", name, r.Key, back.Value, got.Value)
			}
			switch {
			case want.status == StatusNotFound:
				seen["not_found"] = true
			case wantJSON == "null":
				seen["null/"+name] = true
			default:
				seen["present/"+name] = true
				if strings.Contains(wantJSON, `"`+aggregations.OtherBucket+`"`) {
					seen["other/"+name] = true
				}
			}
		}
	}
	for _, s := range []string{"not_found", "null/last_amounts_by_cur_30d", "null/top_amounts_by_cur_30d", "null/last_merchants_by_cur_7d"} {
		if !seen[s] {
			t.Errorf("the fixture did not reach %s (seen %v)", s, seen)
		}
	}
	for _, name := range bucketListFeatures {
		if !seen["present/"+name] {
			t.Errorf("the fixture did not reach a value of %s (seen %v)", name, seen)
		}
		if f, _ := fx.cfg.Feature(name); f.MaxBuckets < aggregations.DefaultMaxBuckets && !seen["other/"+name] {
			t.Errorf("the fixture did not fold buckets of %s into %s (seen %v)", name, aggregations.OtherBucket, seen)
		}
	}
	// The shapes the README documents.
	u1 := raw.Results[0].Features
	if v := string(u1["top_merchants_by_cur"].Value); !strings.HasPrefix(v, `{"CHF":[{"value":"m-`) {
		t.Errorf("top_k of strings written as %s", v)
	}
	if v := string(u1["last_merchants_by_cur_7d"].Value); !strings.Contains(v, `":["m-`) {
		t.Errorf("last_k of strings written as %s", v)
	}

	// GET answers the same maps.
	rec = fx.do(t, "GET", "/v1/features/user/u1", "")
	if rec.Code != 200 {
		t.Fatalf("entity: %d %s", rec.Code, rec.Body)
	}
	var one struct {
		Results []struct {
			Features map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"features"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil || len(one.Results) != 1 {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	for _, name := range bucketListFeatures {
		if g, p := string(one.Results[0].Features[name].Value), string(u1[name].Value); g != p {
			t.Errorf("GET %s of u1 = %s, POST gave %s", name, g, p)
		}
	}

	// Feast's online endpoint: the same maps, lists of numbers as floats
	// and a top_k bucket as its list of {value, count} objects (Feast
	// MAP_LIST; an unbucketed top_k is a String, its JSON text); an empty window is NULL_VALUE and null.
	prefixed := make([]string, len(bucketListFeatures))
	for i, n := range bucketListFeatures {
		prefixed[i] = "transactions:" + n
	}
	body, _ = json.Marshal(map[string]any{"features": prefixed, "entities": map[string]any{"user_id": keys}})
	rec = fx.do(t, "POST", "/get-online-features", string(body))
	if rec.Code != 200 {
		t.Fatalf("feast: %d %s", rec.Code, rec.Body)
	}
	var feast struct {
		Metadata struct {
			FeatureNames []string `json:"feature_names"`
		} `json:"metadata"`
		Results []struct {
			Values   []json.RawMessage `json:"values"`
			Statuses []string          `json:"statuses"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &feast); err != nil {
		t.Fatal(err)
	}
	for j, name := range feast.Metadata.FeatureNames {
		if !slices.Contains(bucketListFeatures, name) {
			continue
		}
		col := feast.Results[j]
		for i, key := range keys {
			served := raw.Results[i].Features[name]
			status, cell := col.Statuses[i], col.Values[i]
			switch {
			case served.Status == StatusNotFound:
				if status != feastNotFound || string(cell) != "null" {
					t.Errorf("feast %s of %s: %s %s, want NOT_FOUND null", name, key, status, cell)
				}
				continue
			case string(served.Value) == "null":
				if status != feastNull || string(cell) != "null" {
					t.Errorf("feast %s of %s: %s %s, want NULL_VALUE null", name, key, status, cell)
				}
				continue
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(cell, &m); err != nil || status != feastPresent {
				t.Errorf("feast %s of %s: %s %s (%v)", name, key, status, cell, err)
				continue
			}
			var want map[string]json.RawMessage
			if err := json.Unmarshal(served.Value, &want); err != nil || len(m) != len(want) {
				t.Errorf("feast %s of %s: %s, lookup %s", name, key, cell, served.Value)
				continue
			}
			for b, c := range m {
				w := want[b]
				if strings.HasPrefix(name, "top_") {
					// Feast MAP_LIST: the bucket's list of {value, count} objects, as offline.
					if canonicalJSON(t, c) != canonicalJSON(t, w) {
						t.Errorf("feast %s of %s bucket %s: %s, want the objects of %s", name, key, b, c, w)
					}
					continue
				}
				if canonicalJSON(t, c) != canonicalJSON(t, w) || (strings.Contains(name, "amounts") && !strings.Contains(string(c), ".")) {
					t.Errorf("feast %s of %s bucket %s: %s, lookup %s", name, key, b, c, w)
				}
			}
		}
	}
	if len(feast.Metadata.FeatureNames) == 0 {
		t.Errorf("feast answer without feature names: %s", rec.Body)
	}
}

// TestBucketedListValueJSON: appendJSON writes a bucketed top_k and a
// bucketed string list exactly as encoding/json writes their FeatureValue,
// and both read back into the same value.
func TestBucketedListValueJSON(t *testing.T) {
	for _, tt := range []struct {
		v    value
		want string
	}{
		{value{typ: aggregations.TypeString, hasV: true, status: StatusPresent, version: 1, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeString, top: []TopValue{{Str: "m-1", Count: 3}, {Str: "m-0", Count: 1}}, hasV: true}},
			{"__other__", value{typ: aggregations.TypeString, top: []TopValue{{Str: "", Count: 2}}, hasV: true}}}},
			`{"value":{"EUR":[{"value":"m-1","count":3},{"value":"m-0","count":1}],"__other__":[{"value":"","count":2}]},"status":"PRESENT","version":1}`},
		{value{typ: aggregations.TypeDouble, hasV: true, status: StatusPresent, version: 3, buckets: []bucketEntry{
			{"true", value{typ: aggregations.TypeDouble, top: []TopValue{{Value: 2.5, Count: 4}}, hasV: true}}}},
			`{"value":{"true":[{"value":2.5,"count":4}]},"status":"PRESENT","version":3}`},
		{value{typ: aggregations.TypeString, hasV: true, status: StatusPresent, version: 2, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeString, strs: []string{"m-3", "m-1"}, hasV: true}}}},
			`{"value":{"EUR":["m-3","m-1"]},"status":"PRESENT","version":2}`},
		{value{typ: aggregations.TypeDouble, hasV: true, status: StatusPresent, version: 2, buckets: []bucketEntry{
			{"EUR", value{typ: aggregations.TypeDouble, list: []float64{3.5, 1}, hasV: true}}}},
			`{"value":{"EUR":[3.5,1]},"status":"PRESENT","version":2}`},
	} {
		b := tt.v.appendJSON(nil)
		if string(b) != tt.want {
			t.Errorf("written as %s, want %s", b, tt.want)
		}
		if m, err := json.Marshal(tt.v.public()); err != nil || string(m) != tt.want {
			t.Errorf("encoding/json wrote %s (%v), want %s", m, err, tt.want)
		}
		var fv FeatureValue
		if err := json.Unmarshal(b, &fv); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if again, err := json.Marshal(fv); err != nil || string(again) != tt.want {
			t.Errorf("%s re-written as %s, %v", b, again, err)
		}
	}
}

// TestLookupLogCarriesBucketedLists: the lookup log records bucketed
// first_k/last_k of numbers under "bucket_lists", of a string field under
// "bucket_string_lists" and bucketed top_k under "bucket_tops" (each
// bucket's JSON text and its error, 0 here: few values), exactly the maps
// served (null for an empty window), next to the scalar features; each
// record is byte for byte what the lookuplog codec encodes for it.
func TestLookupLogCarriesBucketedLists(t *testing.T) {
	brokers := newTestCluster(t, 3).ListenAddrs()
	cfg := bucketListConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	writeView(t, st, cfg, bucketListEvents(T), T)
	svc, err := New(Options{Brokers: brokers, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, "the service did not become ready")
	fx := &fixture{svc: svc, cfg: cfg, T: T, h: svc.Handler()}
	keys := []string{"u1", "u2", "42"}
	body, _ := json.Marshal(map[string]any{"entity": "user", "keys": keys, "features": append([]string{"txn_count_7d"}, bucketListFeatures...)})
	rec := fx.do(t, "POST", "/v1/lookup", string(body))
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp struct {
		Results []struct {
			Key      string `json:"key"`
			Features map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"features"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != len(keys) {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(cfg.Kafka.LookupLogTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var entries []*lookuplog.Entry
	for len(entries) < len(keys) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for b := range lookuplog.Entries(r.Value) {
				e, err := lookuplog.Decode(b)
				if err != nil {
					t.Fatalf("%s: %v", b, err)
				}
				if again, err := e.Encode(); err != nil || string(again) != string(b) {
					t.Errorf("written  %s\nre-encoded %s (%v)", b, again, err)
				}
				entries = append(entries, e)
			}
		})
	}
	if len(entries) != len(keys) {
		t.Fatalf("%d log entries, want %d", len(entries), len(keys))
	}
	seen := map[string]bool{}
	for _, e := range entries {
		var served map[string]struct {
			Value json.RawMessage `json:"value"`
		}
		for _, r := range resp.Results {
			if r.Key == e.Key {
				served = r.Features
			}
		}
		if len(e.Features) != 1 || e.Features["txn_count_7d@1"] == nil || e.Buckets != nil || e.Tops != nil || e.Lists != nil {
			t.Errorf("%s: logged %+v, want txn_count_7d@1 among the numbers and nothing in the other sections", e.Key, e)
		}
		for _, name := range bucketListFeatures {
			f, _ := cfg.Feature(name)
			id := f.Name + "@1"
			var logged any
			var ok bool
			switch {
			case f.Aggregation == aggregations.TopK:
				var m map[string]*lookuplog.ServedTop
				m, ok = e.BucketTops[id]
				if m != nil {
					texts := map[string]json.RawMessage{}
					for k, top := range m {
						if top == nil || top.Error != 0 {
							t.Errorf("%s %s bucket %s: logged %+v, want an exact top_k", e.Key, id, k, top)
							continue
						}
						texts[k] = top.Value
					}
					logged = texts
				}
				seen["tops"] = seen["tops"] || m != nil
			case f.Window.Strings():
				var m map[string][]string
				m, ok = e.BucketStringLists[id]
				if m != nil {
					logged = m
				}
				seen["strings"] = seen["strings"] || m != nil
			default:
				var m map[string][]float64
				m, ok = e.BucketLists[id]
				if m != nil {
					logged = m
				}
				seen["lists"] = seen["lists"] || m != nil
			}
			if !ok {
				t.Errorf("%s: %s not logged (%+v)", e.Key, id, e)
				continue
			}
			lb, err := json.Marshal(logged)
			if err != nil {
				t.Fatal(err)
			}
			if canonicalJSON(t, lb) != canonicalJSON(t, served[name].Value) {
				t.Errorf("%s %s: logged %s, served %s", e.Key, id, lb, served[name].Value)
			}
			if logged == nil {
				seen["null"] = true
			}
		}
	}
	for _, s := range []string{"tops", "strings", "lists", "null"} {
		if !seen[s] {
			t.Errorf("the log did not carry %s (seen %v)", s, seen)
		}
	}
}
