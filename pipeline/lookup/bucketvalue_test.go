package lookup

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
)

// bucketFixture is the lookup fixture with three bucketed features added
// to the test feature file (bucketConfig), over the fixture's events with a
// currency bucket each (bucketEvents).
func bucketFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := bucketConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := bucketEvents(T)
	writeView(t, st, cfg, events, T)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }, LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(map[int32]int64{}, nil)
	svc.registryCaughtUp()
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}
}

// bucketConfig is the test feature file with three bucketed features.
func bucketConfig(t *testing.T) *config.File {
	t.Helper()
	data, err := os.ReadFile("testdata/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte(`  - {name: amount_by_currency_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: currency, max_buckets: 2, window: 7d, owner: t, description: d}
  - {name: count_by_currency, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: last_by_currency_1h, version: 1, entity: user, source: transactions, aggregation: last, field: amount, bucket: currency, window: 1h, owner: t, description: d}
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

// bucketEvents are the fixture's events with a currency bucket each (EUR,
// USD, GBP, CHF, in turn).
func bucketEvents(T int64) fixtureEvents {
	events := fixtureData(T)
	currencies := []string{"EUR", "USD", "GBP", "CHF"}
	for _, byKey := range events {
		for _, evs := range byKey {
			for i := range evs {
				evs[i].Bucket = currencies[evs[i].Seq%4]
			}
		}
	}
	return events
}

// TestLookupLogCarriesBuckets: the lookup log records a bucketed feature
// under "buckets" as the map served, next to the scalar features.
func TestLookupLogCarriesBuckets(t *testing.T) {
	brokers := newTestCluster(t, 3).ListenAddrs()
	cfg := bucketConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	writeView(t, st, cfg, bucketEvents(T), T)
	svc, err := New(Options{Brokers: brokers, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, "the service did not become ready")
	fx := &fixture{svc: svc, cfg: cfg, T: T, h: svc.Handler()}
	rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1","u2"],"features":["amount_by_currency_7d","txn_count_7d","last_by_currency_1h"]}`)
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != 2 {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	entries := consumeLog(t, brokers, cfg.Kafka.LookupLogTopic, 2, 30*time.Second)
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2", len(entries))
	}
	for _, e := range entries {
		var r KeyResult
		for _, x := range resp.Results {
			if x.Key == e.Key {
				r = x
			}
		}
		if len(e.Features) != 1 || e.Features["txn_count_7d@1"] == nil {
			t.Errorf("%s: logged features %v, want txn_count_7d@1 only", e.Key, e.Features)
		}
		if len(e.Buckets) != 2 {
			t.Fatalf("%s: logged buckets %v, want two maps", e.Key, e.Buckets)
		}
		for name, id := range map[string]string{"amount_by_currency_7d": "amount_by_currency_7d@1", "last_by_currency_1h": "last_by_currency_1h@1"} {
			served, logged := r.Features[name].Buckets, e.Buckets[id]
			if (served == nil) != (logged == nil) || len(served) != len(logged) {
				t.Errorf("%s %s: logged %v, served %v", e.Key, id, logged, served)
				continue
			}
			for k, b := range served {
				if l, ok := logged[k]; !ok || l == nil || b.Value == nil || *l != *b.Value {
					t.Errorf("%s %s bucket %s: logged %v, served %v", e.Key, id, k, l, b.Value)
				}
			}
		}
	}
}

// TestLookupServesBuckets: a bucketed feature's value is a JSON object from
// bucket to the aggregation over that bucket's events, equal to the brute
// force (aggtest.BucketGroups, then BruteForce per bucket), with
// max_buckets folding the least-populated buckets into __other__; an empty
// window is {} for count and sum and null for last; an unknown entity is
// NOT_FOUND with null. GET, POST and Feast's endpoint agree.
func TestLookupServesBuckets(t *testing.T) {
	fx := bucketFixture(t)
	names := []string{"amount_by_currency_7d", "count_by_currency", "last_by_currency_1h"}
	keys := []string{"u1", "u2", "42", "nobody"}
	body, _ := json.Marshal(map[string]any{"entity": "user", "keys": keys, "features": append([]string{"txn_count_7d"}, names...)})
	rec := fx.do(t, "POST", "/v1/lookup", string(body))
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	seen := map[string]bool{}
	for _, r := range resp.Results {
		for _, name := range names {
			f, err := fx.cfg.Feature(name)
			if err != nil {
				t.Fatal(err)
			}
			got := r.Features[name]
			want := fx.expect(t, f, r.Key)
			if got.Status != want.status {
				t.Errorf("%s of %s: status %s, want %s", name, r.Key, got.Status, want.status)
			}
			groups := aggtest.BucketGroups(f.Window, fx.events[f.Source][r.Key], fx.T, f.MaxBuckets)
			switch {
			case want.status == StatusNotFound || (len(groups) == 0 && !f.Aggregation.EmptyIsZero()):
				if got.Buckets != nil || got.Value != nil {
					t.Errorf("%s of %s: %+v, want null", name, r.Key, got)
				}
				seen["null/"+name] = true
				continue
			case got.Buckets == nil || len(got.Buckets) != len(groups):
				t.Errorf("%s of %s: buckets %v, want %d buckets %v", name, r.Key, got.Buckets, len(groups), groups)
				continue
			}
			for key, evs := range groups {
				wv, _ := aggtest.BruteForce(f.Aggregation, f.Window, evs, fx.T)
				b, ok := got.Buckets[key]
				if !ok || b.Value == nil || !aggtest.Close(*b.Value, wv) {
					t.Errorf("%s of %s: bucket %s = %+v, brute force %v", name, r.Key, key, b, wv)
				}
				if key == aggregations.OtherBucket {
					seen["other/"+name] = true
				}
			}
			if len(groups) == 0 {
				seen["empty/"+name] = true
			} else {
				seen["present/"+name] = true
			}
		}
	}
	for _, s := range []string{"present/amount_by_currency_7d", "other/amount_by_currency_7d", "empty/amount_by_currency_7d", "null/last_by_currency_1h", "present/last_by_currency_1h", "present/count_by_currency"} {
		if !seen[s] {
			t.Errorf("the fixture did not reach %s (seen %v)", s, seen)
		}
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"amount_by_currency_7d":{"value":{"`)) {
		t.Errorf("the map is not a JSON object: %s", rec.Body)
	}

	// GET answers the same maps.
	rec = fx.do(t, "GET", "/v1/features/user/u1", "")
	if rec.Code != 200 {
		t.Fatalf("entity: %d %s", rec.Code, rec.Body)
	}
	var one LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(one.Results[0].Features["count_by_currency"].Buckets)
	b, _ := json.Marshal(resp.Results[0].Features["count_by_currency"].Buckets)
	if string(a) != string(b) || len(a) < 10 {
		t.Errorf("GET count_by_currency of u1 = %s, POST gave %s", a, b)
	}

	// Feast's online endpoint: the same map as a JSON object.
	rec = fx.do(t, "POST", "/get-online-features", `{"features":["count_by_currency"],"entities":{"user_id":["u1"]}}`)
	if rec.Code != 200 {
		t.Fatalf("feast: %d %s", rec.Code, rec.Body)
	}
	var feast struct {
		Results []struct {
			Values   []json.RawMessage `json:"values"`
			Statuses []string          `json:"statuses"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &feast); err != nil {
		t.Fatal(err)
	}
	last := feast.Results[len(feast.Results)-1]
	var m map[string]float64
	if err := json.Unmarshal(last.Values[0], &m); err != nil || last.Statuses[0] != "PRESENT" || len(m) != len(resp.Results[0].Features["count_by_currency"].Buckets) {
		t.Errorf("feast answer %s: %v %v", rec.Body, m, err)
	}
	for k, v := range m {
		if w := resp.Results[0].Features["count_by_currency"].Buckets[k].Value; w == nil || *w != v {
			t.Errorf("feast bucket %s = %v, lookup %v", k, v, w)
		}
	}
}

// TestBucketValueJSON: a bucketed value is written as a JSON object by
// appendJSON exactly as encoding/json writes its FeatureValue, reads back
// the same, and keeps each bucket's type (a boolean, a list, a string, a
// null).
func TestBucketValueJSON(t *testing.T) {
	for _, tt := range []struct {
		v    value
		want string
	}{
		{value{typ: aggregations.TypeDouble, hasV: true, status: StatusPresent, version: 1, buckets: []bucketEntry{
			{"__other__", value{v: 1, hasV: true}}, {"atm", value{v: 12.5, hasV: true}}, {"grocery", value{v: 3, hasV: true}}, {`q"t`, value{}}}},
			`{"value":{"__other__":1,"atm":12.5,"grocery":3,"q\"t":null},"status":"PRESENT","version":1}`},
		{value{typ: aggregations.TypeBool, hasV: true, status: StatusPresent, version: 2, buckets: []bucketEntry{
			{"a", value{typ: aggregations.TypeBool, v: 1, hasV: true}}, {"b", value{typ: aggregations.TypeBool, list: []float64{0, 1}, hasV: true}}}},
			`{"value":{"a":true,"b":[false,true]},"status":"PRESENT","version":2}`},
		{value{typ: aggregations.TypeString, hasV: true, status: StatusPresent, version: 1, buckets: []bucketEntry{
			{"x", value{typ: aggregations.TypeString, str: "atm", hasV: true}}}},
			`{"value":{"x":"atm"},"status":"PRESENT","version":1}`},
		{value{hasV: true, status: StatusEmptyWindow, version: 1, buckets: []bucketEntry{}}, `{"value":{},"status":"EMPTY_WINDOW","version":1}`},
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
		if fv.Buckets == nil || len(fv.Buckets) != len(tt.v.buckets) {
			t.Errorf("%s read back as %+v", b, fv)
		}
		if again, err := json.Marshal(fv); err != nil || string(again) != tt.want {
			t.Errorf("%s re-written as %s, %v", b, again, err)
		}
	}
}
