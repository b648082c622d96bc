package lookup

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
)

// listFixture is the lookup fixture with two list features added to the
// test feature file (see listConfig).
func listFixture(t *testing.T) *fixture {
	t.Helper()
	cfg := listConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	events := fixtureData(T)
	writeView(t, st, cfg, events, T)
	svc, err := New(Options{Brokers: []string{"127.0.0.1:1"}, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }, LookupLogSample: NoLookupLog})
	if err != nil {
		t.Fatal(err)
	}
	svc.setCatchUp(map[int32]int64{}, nil)
	svc.registryCaughtUp()
	return &fixture{svc: svc, cfg: cfg, events: events, T: T, h: svc.Handler()}
}

// listConfig is the test feature file with two list features added:
// last_k (k 3, 7d) and first_k (k 5, lifetime).
func listConfig(t *testing.T) *config.File {
	t.Helper()
	data, err := os.ReadFile("testdata/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte(`  - {name: txn_amount_last3_7d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 7d, owner: t, description: d}
  - {name: txn_amount_first5, version: 1, entity: user, source: transactions, aggregation: first_k, k: 5, field: amount, window: lifetime, owner: t, description: d}
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

// TestLookupLogCarriesLists: the lookup log records the scalar features of
// a request under "features" (what skew reads) and its list features under
// "lists", each the list the response served (what the served-value
// statistics read).
func TestLookupLogCarriesLists(t *testing.T) {
	brokers := newTestCluster(t, 3).ListenAddrs()
	cfg := listConfig(t)
	st := openTestStore(t)
	T := fixtureNow.UnixMilli()
	writeView(t, st, cfg, fixtureData(T), T)
	svc, err := New(Options{Brokers: brokers, Config: cfg, Store: st, Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, "the service did not become ready")
	fx := &fixture{svc: svc, cfg: cfg, T: T, h: svc.Handler()}
	rec := fx.do(t, "POST", "/v1/lookup", `{"entity":"user","keys":["u1"],"features":["txn_amount_last3_7d","txn_count_7d","txn_amount_first5"]}`)
	if rec.Code != 200 {
		t.Fatalf("lookup: %d %s", rec.Code, rec.Body)
	}
	var resp struct {
		Results []struct {
			Features map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"features"`
		} `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != 1 {
		t.Fatalf("response %s: %v", rec.Body, err)
	}
	entries := consumeLog(t, brokers, cfg.Kafka.LookupLogTopic, 1, 30*time.Second)
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1", len(entries))
	}
	f := entries[0].Features
	if len(f) != 1 || f["txn_count_7d@1"] == nil {
		t.Errorf("logged features %v, want txn_count_7d@1 only", f)
	}
	lists := entries[0].Lists
	if len(lists) != 2 {
		t.Fatalf("logged lists %v, want txn_amount_last3_7d@1 and txn_amount_first5@1", lists)
	}
	for name, id := range map[string]string{"txn_amount_last3_7d": "txn_amount_last3_7d@1", "txn_amount_first5": "txn_amount_first5@1"} {
		var served []float64
		if err := json.Unmarshal(resp.Results[0].Features[name].Value, &served); err != nil {
			t.Fatalf("%s served %s: %v", name, resp.Results[0].Features[name].Value, err)
		}
		got, ok := lists[id]
		if !ok || len(got) == 0 || !slices.Equal(got, served) {
			t.Errorf("%s logged %v (present %v), served %v", id, got, ok, served)
		}
	}
}

// TestLookupServesLists: POST /v1/lookup and GET /v1/features answer a
// first_k / last_k feature with a JSON array equal to the brute force over
// the raw events (aggtest.BruteForceList), null for an empty window
// (EMPTY_WINDOW) and an unknown key (NOT_FOUND); Feast's online endpoint
// answers the same array.
func TestLookupServesLists(t *testing.T) {
	fx := listFixture(t)
	names := []string{"txn_amount_last3_7d", "txn_amount_first5"}
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
			want := fx.expect(t, f, r.Key) // status (value: null, Finalize has no list)
			wantList, ok := aggtest.BruteForceList(f.Aggregation, f.Window, fx.events[f.Source][r.Key], fx.T)
			if got.Status != want.status || got.Value != nil || (got.List != nil) != ok || !slices.Equal(got.List, wantList) {
				t.Errorf("%s of %s: %+v (list %v), want status %s list %v (%v)", name, r.Key, got, got.List, want.status, wantList, ok)
			}
			seen[got.Status+"/"+name] = true
			if ok && len(wantList) == f.K {
				seen["full/"+name] = true
			}
		}
		if r.Features["txn_count_7d"].Value == nil && r.Key != "nobody" {
			t.Errorf("scalar feature of %s lost its value: %+v", r.Key, r.Features["txn_count_7d"])
		}
	}
	for _, s := range []string{"PRESENT/txn_amount_last3_7d", "EMPTY_WINDOW/txn_amount_last3_7d", "NOT_FOUND/txn_amount_last3_7d", "PRESENT/txn_amount_first5", "full/txn_amount_last3_7d", "full/txn_amount_first5"} {
		if !seen[s] {
			t.Errorf("the fixture did not reach %s (seen %v)", s, seen)
		}
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"txn_amount_last3_7d":{"value":[`)) {
		t.Errorf("the list is not a JSON array: %s", rec.Body)
	}

	// GET /v1/features/user/u1 answers every latest feature, the lists too.
	rec = fx.do(t, "GET", "/v1/features/user/u1", "")
	if rec.Code != 200 {
		t.Fatalf("entity: %d %s", rec.Code, rec.Body)
	}
	var one LookupResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil {
		t.Fatal(err)
	}
	if got, want := one.Results[0].Features["txn_amount_first5"].List, resp.Results[0].Features["txn_amount_first5"].List; len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("GET first5 of u1 = %v, POST gave %v", got, want)
	}

	// Feast's online endpoint: the same list as an array.
	rec = fx.do(t, "POST", "/get-online-features", `{"features":["txn_amount_last3_7d"],"entities":{"user_id":["u1"]}}`)
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
	var got []float64
	last := feast.Results[len(feast.Results)-1]
	if err := json.Unmarshal(last.Values[0], &got); err != nil || !slices.Equal(got, resp.Results[0].Features["txn_amount_last3_7d"].List) || last.Statuses[0] != "PRESENT" {
		t.Errorf("feast answer %s: %v %v, want %v", rec.Body, got, err, resp.Results[0].Features["txn_amount_last3_7d"].List)
	}
	// Every element is a JSON float (3.0, not 3): the Feast SDK converts the
	// array as DOUBLE_LIST, which refuses Python ints.
	var raw []json.RawMessage
	if err := json.Unmarshal(last.Values[0], &raw); err != nil {
		t.Fatal(err)
	}
	for _, e := range raw {
		if !bytes.ContainsAny(e, ".e") {
			t.Errorf("feast list element %s is not written as a float (in %s)", e, last.Values[0])
		}
	}
}

// TestFeastDoublesJSON: a list in Feast's answer writes integral doubles
// with ".0" and every double so that it reads back exactly.
func TestFeastDoublesJSON(t *testing.T) {
	in := feastDoubles{3, -2, 0, 2.5, 1e21, 1e-7, 123456789012, 0.1, 5e-324}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[3.0,-2.0,0.0,2.5,1e+21,1e-07,123456789012.0,0.1,5e-324]`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	var back []float64
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back, []float64(in)) {
		t.Errorf("read back %v (%v), want %v", back, err, in)
	}
	if _, err := json.Marshal(feastDoubles{math.NaN()}); err == nil {
		t.Error("NaN was written")
	}
}

// TestListValueEncoding: the hand-written encoder writes list values exactly
// as encoding/json writes the public FeatureValue (MarshalJSON), and
// UnmarshalJSON reads them back.
func TestListValueEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	floats := []float64{0, math.Copysign(0, -1), 1, -2.5, 0.1, 1e21, 1e-7, 123456789.125}
	for n := range 200 {
		a := &lookupAnswer{asOf: time.UnixMilli(rng.Int64N(4e12)).UTC()}
		a.names = []string{"l", "x"}
		a.feats = []pickedFeature{{}, {}}
		a.keys = []string{"k"}
		l := value{status: StatusPresent, version: 1, hasV: rng.IntN(4) > 0, updated: rng.Int64N(2) * rng.Int64N(4e12)}
		if l.hasV {
			l.list = []float64{}
			for range 1 + rng.IntN(4) {
				l.list = append(l.list, floats[rng.IntN(len(floats))])
			}
		}
		x := value{status: StatusPresent, version: 2, v: floats[rng.IntN(len(floats))], hasV: true}
		a.vals = []value{l, x}
		a.sortNames()
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(a.response()); err != nil {
			t.Fatal(err)
		}
		got := a.appendJSON(nil)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d:\n got %s\nwant %s", n, got, want.Bytes())
		}
		var back LookupResponse
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		bl, bx := back.Results[0].Features["l"], back.Results[0].Features["x"]
		if !slices.Equal(bl.List, l.list) || (bl.List == nil) != !l.hasV || bl.Value != nil || bx.Value == nil || *bx.Value != x.v || bx.List != nil {
			t.Fatalf("case %d: round trip %+v %+v of %s", n, bl, bx, got)
		}
	}
}

// TestBooleanFeatureValueRoundTrip: a boolean feature's value and list are
// JSON booleans, and read back as 1/0 with Type TypeBool; a long's is a
// whole JSON number.
func TestBooleanFeatureValueRoundTrip(t *testing.T) {
	one, big := 1.0, float64(1<<53)
	for _, c := range []struct {
		fv   FeatureValue
		json string
	}{
		{FeatureValue{Value: &one, Type: aggregations.TypeBool, Status: StatusPresent}, `{"value":true,"status":"PRESENT","version":0}`},
		{FeatureValue{List: []float64{0, 1}, Type: aggregations.TypeBool, Status: StatusPresent}, `{"value":[false,true],"status":"PRESENT","version":0}`},
		{FeatureValue{Value: &big, Type: aggregations.TypeLong, Status: StatusPresent}, `{"value":9007199254740992,"status":"PRESENT","version":0}`},
	} {
		b, err := json.Marshal(c.fv)
		if err != nil || string(b) != c.json {
			t.Errorf("Marshal %+v = %s, %v; want %s", c.fv, b, err, c.json)
			continue
		}
		var back FeatureValue
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		wantType := c.fv.Type
		if wantType == aggregations.TypeLong {
			wantType = aggregations.TypeDouble // JSON cannot tell a long from a double
		}
		if back.Type != wantType || (c.fv.Value != nil) != (back.Value != nil) || (back.Value != nil && *back.Value != *c.fv.Value) || !slices.Equal(back.List, c.fv.List) {
			t.Errorf("%s read back as %+v", b, back)
		}
	}
}

// TestTopValueRoundTrip: a top_k value is a JSON array of {"value",
// "count"} objects, the value typed as the feature's (a string, a boolean,
// a number), and reads back into Top with that type; an empty top_k (the
// summary kept no value) is [], not null.
func TestTopValueRoundTrip(t *testing.T) {
	for _, c := range []struct {
		fv   FeatureValue
		json string
	}{
		{FeatureValue{Top: []TopValue{{Str: "atm", Count: 3}, {Str: `a"b`, Count: 1}}, Type: aggregations.TypeString, Status: StatusPresent},
			`{"value":[{"value":"atm","count":3},{"value":"a\"b","count":1}],"status":"PRESENT","version":0}`},
		{FeatureValue{Top: []TopValue{{Value: 0, Count: 2}, {Value: 1, Count: 2}}, Type: aggregations.TypeBool, Status: StatusPresent},
			`{"value":[{"value":false,"count":2},{"value":true,"count":2}],"status":"PRESENT","version":0}`},
		{FeatureValue{Top: []TopValue{{Value: 12.5, Count: 7}}, Status: StatusPresent},
			`{"value":[{"value":12.5,"count":7}],"status":"PRESENT","version":0}`},
		{FeatureValue{Top: []TopValue{}, Status: StatusPresent}, `{"value":[],"status":"PRESENT","version":0}`},
	} {
		b, err := json.Marshal(c.fv)
		if err != nil || string(b) != c.json {
			t.Errorf("Marshal %+v = %s, %v; want %s", c.fv, b, err, c.json)
			continue
		}
		var back FeatureValue
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if len(c.fv.Top) == 0 {
			continue // [] reads back as an empty list: JSON cannot tell which
		}
		if back.Type != c.fv.Type || !slices.Equal(back.Top, c.fv.Top) || back.Value != nil || back.List != nil {
			t.Errorf("%s read back as %+v", b, back)
		}
	}
}
