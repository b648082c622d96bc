package feastflight_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/feastrepo"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// featureFile has a lifetime feature in each source, so that a backfill of
// every feature replays all history (exactly what the brute force sees).
var featureFile = testkit.KafkaSection(2) + testkit.UserTransactions + `  - name: logins
    topic: logins-{{ID}}
    schema: login.avsc
    event_time: ts
features:
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 6h, owner: t, description: "Transactions in the last 7 days."}
  - {name: txn_sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_avg_30d, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_max_7d, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 7d, owner: t, description: d}
  - {name: txn_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: login_count_life, version: 1, entity: user, source: logins, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}
  - {name: txn_amount_last5_30d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 5, field: amount, window: 30d, owner: t, description: "Newest five amounts, 30 days."}
  - {name: login_last_at, version: 1, entity: user, source: logins, aggregation: last, field: ts, window: lifetime, owner: t, description: "A long: Feast Int64."}
  - {name: login_first_ok, version: 1, entity: user, source: logins, aggregation: first, field: success, window: lifetime, owner: t, description: "A boolean: Feast Bool."}
  - {name: login_times3, version: 1, entity: user, source: logins, aggregation: last_k, k: 3, field: ts, window: lifetime, owner: t, description: "Longs: Feast Array(Int64)."}
  - {name: txn_last_merchant, version: 1, entity: user, source: transactions, aggregation: last, field: merchant_id, window: lifetime, owner: t, description: "A string: Feast String."}
  - {name: txn_merchants3, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: merchant_id, window: 30d, owner: t, description: "Strings: Feast Array(String)."}
  - {name: txn_top_merchants_30d, version: 1, entity: user, source: transactions, aggregation: top_k, k: 3, field: merchant_id, window: 30d, owner: t, description: "top_k: Feast String, the JSON text."}
  - {name: txn_amount_by_merchant_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, bucket: merchant_id, max_buckets: 4, window: 7d, owner: t, description: "Bucketed: Feast Map."}
  - {name: txn_amounts_by_merchant_30d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: merchant_id, max_buckets: 4, window: 30d, owner: t, description: "Bucketed last_k: Feast Map of lists."}
  - {name: txn_top_merchants_by_cur_30d, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: merchant_id, bucket: currency, max_buckets: 2, window: 30d, owner: t, description: "Bucketed top_k: Feast Map of lists of {value, count}."}
services:
  - name: fraud_scoring
    owner: fraud-team
    description: A pinned version and bare names of two sources, a list, a top_k and maps (of numbers, of lists, of top_k lists).
    features: [txn_count_7d@1, txn_avg_30d, login_count_1h, txn_max_7d, txn_amount_last5_30d, txn_top_merchants_30d, txn_amount_by_merchant_7d, txn_amounts_by_merchant_30d, txn_top_merchants_by_cur_30d]
`

// world is every produced event, by source and key, Seq = Kafka offset.
type world map[string]map[string][]aggregations.Event

// currencyOf is the currency of a produced transaction: one of three, from
// its amount's whole part (so the world needs no other field).
func currencyOf(amount float64) string {
	return []string{"EUR", "USD", "GBP"}[int(amount)%3]
}

// events are the events of f's source for key with f's field as their
// value: the amount, or the event time (a long field: ts), or 1 (success,
// always true in testkit.Event's logins); a feature bucketed by currency
// has each event's currency as its bucket (merchant_id otherwise).
func (w world) events(f *config.Feature, key string) []aggregations.Event {
	evs := w[f.Source][key]
	if f.Bucket == "currency" {
		out := make([]aggregations.Event, len(evs))
		for i, e := range evs {
			out[i] = e
			out[i].Bucket = currencyOf(e.Value)
		}
		return out
	}
	if f.Field != "ts" && f.Field != "success" {
		return evs
	}
	out := make([]aggregations.Event, len(evs))
	for i, e := range evs {
		out[i] = e
		out[i].Value = 1
		if f.Field == "ts" {
			out[i].Value = float64(e.TS)
		}
	}
	return out
}

// value is the brute-force value of f for key as of T under the status
// contract: null for a key without any event before T (NOT_FOUND).
func (w world) value(cfg *config.File, f *config.Feature, key string, T int64) *float64 {
	if !w.known(key, T) {
		return nil
	}
	v, ok := aggtest.BruteForce(f.Aggregation, f.Window, w.events(f, key), T)
	if !ok {
		return nil
	}
	return &v
}

// known reports whether key has any event before T.
func (w world) known(key string, T int64) bool {
	for _, byKey := range w {
		for _, e := range byKey[key] {
			if e.TS < T {
				return true
			}
		}
	}
	return false
}

// list is the brute-force value of list feature f (first_k, last_k) for
// key as of T: nil (null) for an empty window or NOT_FOUND.
func (w world) list(f *config.Feature, key string, T int64) []float64 {
	if !w.known(key, T) {
		return nil
	}
	l, ok := aggtest.BruteForceList(f.Aggregation, f.Window, w.events(f, key), T)
	if !ok {
		return nil
	}
	return l
}

// strs is the brute-force value of string feature f (last, last_k of
// merchant_id) for key as of T: a string or a list of strings, nil (null)
// for an empty window or NOT_FOUND.
func (w world) strs(f *config.Feature, key string, T int64) any {
	if !w.known(key, T) {
		return nil
	}
	if f.Aggregation.List() {
		if l, ok := aggtest.BruteForceStringList(f.Aggregation, f.Window, w.events(f, key), T); ok {
			return l
		}
		return nil
	}
	if s, ok := aggtest.BruteForceString(f.Aggregation, f.Window, w.events(f, key), T); ok {
		return s
	}
	return nil
}

// top is the brute-force value of top_k feature f (of merchant_id) for key
// as of T as the lookup service writes it (lookup.TopJSON: the JSON text
// Feast's String field carries), nil (null) for an empty window or
// NOT_FOUND.
func (w world) top(f *config.Feature, key string, T int64) any {
	if !w.known(key, T) {
		return nil
	}
	var typed []aggtest.Typed[string]
	for _, e := range w.events(f, key) {
		typed = append(typed, aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str})
	}
	top, ok := aggtest.BruteForceTopK(f.Window, typed, T, f.K)
	if !ok {
		return nil
	}
	l := make([]lookup.TopValue, len(top))
	for i, c := range top {
		l[i] = lookup.TopValue{Str: c.Value, Count: c.Count}
	}
	return lookup.TopJSON(l, aggregations.TypeString)
}

// buckets is the brute-force value of bucketed feature f (a number per
// bucket) for key as of T: aggtest.BucketGroups, then BruteForce per
// bucket; an empty map for an empty window of sum, nil (null) for
// NOT_FOUND.
func (w world) buckets(f *config.Feature, key string, T int64) map[string]float64 {
	if !w.known(key, T) {
		return nil
	}
	out := map[string]float64{}
	for b, g := range aggtest.BucketGroups(f.Window, w.events(f, key), T, f.MaxBuckets) {
		if v, ok := aggtest.BruteForce(f.Aggregation, f.Window, g, T); ok {
			out[b] = v
		}
	}
	return out
}

// bucketLists is the brute-force value of a bucketed first_k, last_k or
// top_k feature f (of amount or merchant_id) for key as of T:
// aggtest.BucketGroups, then BruteForceList or BruteForceTopK per bucket,
// a map from bucket to a list of numbers or of {"value", "count"}
// objects; nil (null) for an empty window or NOT_FOUND.
func (w world) bucketLists(f *config.Feature, key string, T int64) map[string]any {
	if !w.known(key, T) {
		return nil
	}
	groups := aggtest.BucketGroups(f.Window, w.events(f, key), T, f.MaxBuckets)
	if len(groups) == 0 {
		return nil
	}
	out := map[string]any{}
	for b, g := range groups {
		if f.Aggregation != aggregations.TopK {
			out[b], _ = aggtest.BruteForceList(f.Aggregation, f.Window, g, T)
			continue
		}
		var typed []aggtest.Typed[string]
		for _, e := range g {
			typed = append(typed, aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str})
		}
		top, _ := aggtest.BruteForceTopK(f.Window, typed, T, f.K)
		l := make([]any, len(top))
		for i, c := range top {
			l[i] = map[string]any{"value": c.Value, "count": c.Count}
		}
		out[b] = l
	}
	return out
}

// cell is the brute-force value of f as the cases file carries it: a
// number, a string (a string feature's, or a top_k feature's JSON text),
// a list of numbers or strings (first_k, last_k), a map from bucket to
// number (a bucketed feature), to a list (a bucketed first_k or last_k)
// or to a list of {"value", "count"} objects (a bucketed top_k), or nil
// (null).
func (w world) cell(cfg *config.File, f *config.Feature, key string, T int64) any {
	if f.Bucket != "" && (f.Aggregation.List() || f.Aggregation == aggregations.TopK) {
		if m := w.bucketLists(f, key, T); m != nil {
			return m
		}
		return nil
	}
	if f.Bucket != "" {
		if m := w.buckets(f, key, T); m != nil {
			return m
		}
		return nil
	}
	if f.Aggregation == aggregations.TopK {
		return w.top(f, key, T)
	}
	if f.OutputType() == aggregations.TypeString {
		return w.strs(f, key, T)
	}
	if f.Aggregation.List() {
		if l := w.list(f, key, T); l != nil {
			return l
		}
		return nil
	}
	if v := w.value(cfg, f, key, T); v != nil {
		return *v
	}
	return nil
}

// TestFeastSDK drives featurepipe with the real Feast SDK: a worker over an
// embedded broker, `featurepipe serve --flight` (the lookup service and the
// Flight offline store) in its own process,
// featurepipe feast-repo's repository, `feast apply`, then
// testdata/feast_check.py's get_online_features (seen, unseen, empty-window
// and other-source-only keys) and get_historical_features (thousands of
// rows, many exactly at event times and 1ms after), by feature references
// and by the generated FeatureService (store.get_feature_service), compared
// with the brute force, the last_k feature (a Feast Array(Float64) field) as
// the brute force's list online and offline, and a long, a boolean and a
// list of longs (Int64, Bool, Array(Int64): last, first, last_k of the
// logins' ts and success) as the brute force's, longs exactly, and a string
// and a list of strings (String, Array(String): last and last_k of the
// transactions' merchant_id) as the brute force's, exactly, and a top_k
// feature (String: the JSON text of its {value, count} list, exactly as
// lookup.TopJSON writes the brute force's) and a bucketed sum (Map: amount
// by merchant_id, max_buckets 4 folding into __other__; online a dict, an
// empty map null as Feast's answer has it, offline the Arrow map<utf8,
// double>, an empty map empty) as the brute force's, and a bucketed
// last_k (Map: a list of amounts per merchant) and a bucketed top_k (Map:
// per currency, 2 kept and __other__, a list of {value, count} objects:
// online dicts, offline Arrow list<struct<value, count>>) as the brute
// force's. FEAST_PYTHON is the python of a venv with the feast package
// (make test-feast builds them).
func TestFeastSDK(t *testing.T) {
	py := os.Getenv("FEAST_PYTHON")
	if py == "" {
		t.Skip("FEAST_PYTHON is not set: make test-feast runs this test with the Feast SDK")
	}
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("FEAST_PYTHON=%s: %v", py, err)
	}
	k, cfg, cl := testkit.Setup(t, featureFile, testkit.SetupOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Events: 80 users over 40 days; "u-old" with one transaction 20 days
	// ago only (known, every short window empty; its amount is integral, so
	// the list feature has an integral double, which Feast's DOUBLE_LIST
	// must receive as a JSON float); "u-login" with logins
	// only (known, no transaction); "nobody" never seen.
	rng := rand.New(rand.NewPCG(9, 3))
	now := time.Now().UnixMilli()
	type ev struct {
		source, key string
		ts          int64
		amount      float64
	}
	// No background event leaves a window in the next 15 minutes (the
	// online check's 10-minute stability horizon, plus start-up): window
	// starts move only at hop boundaries, and near a day boundary half the
	// keys would otherwise change (a 30d window's 1d hop), failing the
	// stability check about one run in six.
	leaves := func(src string, ts int64) bool {
		for _, f := range cfg.Features {
			if f.Source == src && !f.Window.Lifetime() && ts >= f.Window.Start(now) && ts < f.Window.Start(now+15*60_000) {
				return true
			}
		}
		return false
	}
	var evs []ev
	for len(evs) < 3000 {
		key := fmt.Sprintf("u%03d", rng.IntN(80))
		src := "transactions"
		if rng.IntN(4) == 0 {
			src = "logins"
		}
		ts := now - 2*60_000 - rng.Int64N(40*aggregations.Day)
		if leaves(src, ts) {
			continue
		}
		evs = append(evs, ev{src, key, ts, float64(rng.IntN(100_00)) / 100})
	}
	for i := 0; i < 40; i++ { // recent logins for the 1h window
		evs = append(evs, ev{"logins", fmt.Sprintf("u%03d", rng.IntN(80)), now - 2*60_000 - rng.Int64N(50*60_000), 0})
	}
	evs = append(evs, ev{"transactions", "u-old", now - 20*aggregations.Day, 12},
		ev{"logins", "u-login", now - 3*aggregations.Day, 0})
	w := world{}
	encs := map[string]*produce.Encoder{}
	for _, e := range evs {
		enc := encs[e.source]
		if enc == nil {
			var err error
			if enc, err = produce.NewEncoder(cfg, e.source); err != nil {
				t.Fatal(err)
			}
			encs[e.source] = enc
		}
		v := testkit.Event(e.source, e.key, e.ts, e.amount)
		merchant := ""
		if e.source == "transactions" { // one of 7 merchants, from the amount's cents
			merchant = fmt.Sprintf("m-%d", int(e.amount*100)%7)
			v["merchant_id"], v["currency"] = merchant, currencyOf(e.amount)
		}
		r, err := enc.Record(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if w[e.source] == nil {
			w[e.source] = map[string][]aggregations.Event{}
		}
		w[e.source][e.key] = append(w[e.source][e.key], aggregations.Event{TS: e.ts, Seq: r.Offset, Value: e.amount, Str: merchant, Bucket: merchant})
	}

	// Worker, lookup service (HTTP) and the Flight offline store.
	dir := t.TempDir()
	run := func(name string, f func(context.Context) error) {
		done := make(chan error, 1)
		go func() { done <- f(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	open := func(name string) *state.Store {
		st, err := state.Open(filepath.Join(dir, name), state.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	wk, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: open("worker")})
	if err != nil {
		t.Fatal(err)
	}
	run("worker", wk.Run)
	webURL, flightAddr := startServe(t, dir, k.Brokers, cfg.Path)

	// Online cases: the values must not change while Python runs (no
	// window edge passes any event in the next 10 minutes), so the brute
	// force as of now holds as of the SDK's call.
	var refs []string
	var feats []*config.Feature
	for _, f := range cfg.Features {
		refs = append(refs, f.Source+":"+f.Name)
		feats = append(feats, f)
	}
	type cases struct {
		Online struct {
			Features []string            `json:"features"`
			Rows     []map[string]string `json:"rows"`
			Expected [][]any             `json:"expected"` // number, list or nil
		} `json:"online"`
		Offline struct {
			Features []string `json:"features"`
			Keys     []string `json:"keys"`
			TimesMS  []int64  `json:"times_ms"`
			Expected [][]any  `json:"expected"`
		} `json:"offline"`
		// Service is the feature service feast_check.py reads with
		// store.get_feature_service(Name), online and offline; Features are
		// its features as view:name, each one of Online.Features (whose
		// expected values it checks against).
		Service struct {
			Name     string   `json:"name"`
			Features []string `json:"features"`
		} `json:"service"`
	}
	var c cases
	c.Online.Features = refs
	svc, err := cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	c.Service.Name = svc.Name
	for _, ref := range svc.Features {
		f, err := cfg.Feature(ref)
		if err != nil {
			t.Fatal(err)
		}
		c.Service.Features = append(c.Service.Features, f.Source+":"+f.Name)
	}
	row := func(key string, T int64) []any {
		out := make([]any, len(feats))
		for j, f := range feats {
			out[j] = w.cell(cfg, f, key, T)
		}
		return out
	}
	stable := func(key string) bool {
		T0 := time.Now().UnixMilli()
		return reflect.DeepEqual(row(key, T0), row(key, T0+10*60_000))
	}
	onlineKeys := []string{"u-old", "u-login", "nobody"}
	for i := 0; i < 80; i++ {
		if key := fmt.Sprintf("u%03d", i); stable(key) {
			onlineKeys = append(onlineKeys, key)
		}
	}
	if len(onlineKeys) < 40 {
		t.Fatalf("only %d keys have values stable for 10 minutes", len(onlineKeys))
	}
	for _, key := range onlineKeys {
		if !stable(key) {
			t.Fatalf("%s's values change within 10 minutes", key)
		}
		c.Online.Rows = append(c.Online.Rows, map[string]string{"user_id": key})
		r := row(key, time.Now().UnixMilli())
		for j, f := range feats {
			// Feast's online answer has null for an empty map (see
			// lookup's feastCell: the SDK cannot read {}); offline, the
			// Arrow map is empty.
			if m, ok := r[j].(map[string]float64); ok && f.Bucket != "" && len(m) == 0 {
				r[j] = nil
			}
		}
		c.Online.Expected = append(c.Online.Expected, r)
	}
	// The contract on the three special keys, stated (the brute force
	// computes it too).
	if v := c.Online.Expected[0][0]; v != 0.0 {
		t.Fatalf("setup: u-old's txn_count_7d is %v, want a real 0", v)
	}
	if v := c.Online.Expected[2][0]; v != nil {
		t.Fatalf("setup: nobody's txn_count_7d is %v, want null", v)
	}
	// The list feature: u-old's holds its one integral amount, and some
	// online keys have a full list.
	lastK, err := cfg.Feature("txn_amount_last5_30d")
	if err != nil {
		t.Fatal(err)
	}
	lk := slices.Index(feats, lastK)
	if v, ok := c.Online.Expected[0][lk].([]float64); !ok || !slices.Equal(v, []float64{12}) {
		t.Fatalf("setup: u-old's %s is %v, want [12]", lastK.Name, c.Online.Expected[0][lk])
	}
	fullLists := 0
	for _, r := range c.Online.Expected {
		if v, ok := r[lk].([]float64); ok && len(v) == lastK.K {
			fullLists++
		}
	}
	if fullLists == 0 {
		t.Fatalf("setup: no online key has %d values of %s", lastK.K, lastK.Name)
	}
	// The top_k and bucketed features: u-old's top_k holds its one
	// merchant and its 7-day map is empty (null online); some online key has k entries
	// of top_k, and some a map folding buckets into __other__.
	topF, err := cfg.Feature("txn_top_merchants_30d")
	if err != nil {
		t.Fatal(err)
	}
	byF, err := cfg.Feature("txn_amount_by_merchant_7d")
	if err != nil {
		t.Fatal(err)
	}
	tk, bk := slices.Index(feats, topF), slices.Index(feats, byF)
	if m := w.buckets(byF, "u-old", now); m == nil || len(m) != 0 || c.Online.Expected[0][bk] != nil {
		t.Fatalf("setup: u-old's %s is %v (online %v), want an empty map (null online)", byF.Name, m, c.Online.Expected[0][bk])
	}
	if v, ok := c.Online.Expected[0][tk].(string); !ok || !strings.HasPrefix(v, `[{"value":"m-`) || strings.Count(v, "count") != 1 {
		t.Fatalf("setup: u-old's %s is %v, want one merchant", topF.Name, c.Online.Expected[0][tk])
	}
	fullTops, others := 0, 0
	for _, r := range c.Online.Expected {
		if v, ok := r[tk].(string); ok && strings.Count(v, `"count"`) == topF.K {
			fullTops++
		}
		if v, ok := r[bk].(map[string]float64); ok {
			if _, ok := v[aggregations.OtherBucket]; ok && len(v) == byF.MaxBuckets+1 {
				others++
			}
		}
	}
	if fullTops == 0 || others == 0 {
		t.Fatalf("setup: %d online keys have %d values of %s and %d a map with %s", fullTops, topF.K, topF.Name, others, aggregations.OtherBucket)
	}
	// The bucketed last_k and top_k: u-old's last_k map holds its one
	// integral amount (a JSON float in Feast's answer); some online key
	// has a full list in a bucket, and some a top_k map folding a currency
	// into __other__ with k merchants in a bucket.
	lkB, err := cfg.Feature("txn_amounts_by_merchant_30d")
	if err != nil {
		t.Fatal(err)
	}
	tkB, err := cfg.Feature("txn_top_merchants_by_cur_30d")
	if err != nil {
		t.Fatal(err)
	}
	lbk, tbk := slices.Index(feats, lkB), slices.Index(feats, tkB)
	if m, ok := c.Online.Expected[0][lbk].(map[string]any); !ok || len(m) != 1 || fmt.Sprint(m) != fmt.Sprintf("map[%s:[12]]", w["transactions"]["u-old"][0].Str) {
		t.Fatalf("setup: u-old's %s is %v, want one bucket [12]", lkB.Name, c.Online.Expected[0][lbk])
	}
	fullBucketLists, topOthers := 0, 0
	for _, r := range c.Online.Expected {
		if m, ok := r[lbk].(map[string]any); ok {
			for _, l := range m {
				if len(l.([]float64)) == lkB.K {
					fullBucketLists++
				}
			}
		}
		if m, ok := r[tbk].(map[string]any); ok {
			if o, ok := m[aggregations.OtherBucket]; ok && len(m) == tkB.MaxBuckets+1 && len(o.([]any)) == tkB.K {
				topOthers++
			}
		}
	}
	if fullBucketLists == 0 || topOthers == 0 {
		t.Fatalf("setup: %d buckets of %s hold %d values, %d maps of %s have %s with %d merchants", fullBucketLists, lkB.Name, lkB.K, topOthers, tkB.Name, aggregations.OtherBucket, tkB.K)
	}

	// Offline cases: random times, every event time of some keys and 1ms
	// after, and unknown keys.
	c.Offline.Features = refs
	addRow := func(key string, T int64) {
		c.Offline.Keys = append(c.Offline.Keys, key)
		c.Offline.TimesMS = append(c.Offline.TimesMS, T)
		c.Offline.Expected = append(c.Offline.Expected, row(key, T))
	}
	for i := 0; i < 1500; i++ {
		addRow(fmt.Sprintf("u%03d", rng.IntN(82)), now-rng.Int64N(42*aggregations.Day)) // u080, u081: never seen
	}
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("u%03d", i)
		for _, src := range []string{"transactions", "logins"} {
			for _, e := range w[src][key] {
				addRow(key, e.TS)   // the event itself is excluded
				addRow(key, e.TS+1) // and counts 1ms later
			}
		}
	}
	addRow("u-old", now-20*aggregations.Day)
	addRow("u-old", now-20*aggregations.Day+1)
	addRow("u-old", now)
	addRow("nobody", now)
	if len(c.Offline.Keys) < 2000 {
		t.Fatalf("setup: only %d offline rows", len(c.Offline.Keys))
	}

	// The lookup service has every event before Python asks.
	waitOnline(t, webURL, cfg, w, onlineKeys, 90*time.Second)

	repo := filepath.Join(dir, "repo")
	if err := feastrepo.Write(repo, cfg, feastrepo.Options{URL: webURL, Flight: flightAddr}); err != nil {
		t.Fatal(err)
	}
	casesPath := filepath.Join(dir, "cases.json")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(casesPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd(t, repo, 3*time.Minute, filepath.Join(filepath.Dir(py), "feast"), "apply")
	script, err := filepath.Abs("testdata/feast_check.py")
	if err != nil {
		t.Fatal(err)
	}
	out := runCmd(t, repo, 5*time.Minute, py, script, repo, casesPath)
	t.Logf("feast_check: %s", bytes.TrimSpace(out))
}

// startServe builds featurepipe and runs `featurepipe serve --flight` until
// the test ends, returning its lookup URL and Flight address.
func startServe(t *testing.T, dir string, brokers []string, configPath string) (url, flightAddr string) {
	t.Helper()
	bin := filepath.Join(dir, "featurepipe")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/featurepipe").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	web, fl := freePort(t), freePort(t)
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--brokers", strings.Join(brokers, ","), "--config", configPath,
		"--data", filepath.Join(dir, "view"), "--listen", web, "--flight", fl, "--lookup-log-sample", "0")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				log, _ := os.ReadFile(logPath)
				t.Errorf("featurepipe serve: %v\n%s", err, tail(log, 4000))
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("featurepipe serve did not stop within 30s of SIGTERM")
		}
		logFile.Close()
	})
	return "http://" + web, fl
}

// freePort returns a 127.0.0.1 address no one listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCmd runs name args in dir, failing the test with its output on error.
func runCmd(t *testing.T, dir string, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "FEAST_USAGE=False", "PYTHONUNBUFFERED=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, stdout.Bytes(), tail(stderr.Bytes(), 6000))
	}
	return stdout.Bytes()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitOnline polls POST /v1/lookup until every feature of keys equals the
// brute force as of the answer's as_of.
func waitOnline(t *testing.T, url string, cfg *config.File, w world, keys []string, timeout time.Duration) {
	t.Helper()
	var ids []string
	for _, f := range cfg.Features {
		ids = append(ids, f.ID)
	}
	body, _ := json.Marshal(lookup.LookupRequest{Entity: "user", Keys: keys, Features: ids})
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		last = func() string {
			resp, err := http.Post(url+"/v1/lookup", "application/json", bytes.NewReader(body))
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return resp.Status
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err.Error()
			}
			var lr lookup.LookupResponse
			if err := json.Unmarshal(body, &lr); err != nil {
				return err.Error()
			}
			// The answer as plain JSON: a bucketed list's value as written.
			var raw struct {
				Results []struct {
					Features map[string]struct {
						Value any `json:"value"`
					} `json:"features"`
				} `json:"results"`
			}
			if err := json.Unmarshal(body, &raw); err != nil {
				return err.Error()
			}
			T := lr.AsOf.UnixMilli()
			for i, r := range lr.Results {
				for _, f := range cfg.Features {
					if f.Bucket != "" && (f.Aggregation.List() || f.Aggregation == aggregations.TopK) {
						var want any
						if m := w.bucketLists(f, keys[i], T); m != nil {
							want = jsonValueOf(m)
						}
						if got := raw.Results[i].Features[f.ID].Value; !reflect.DeepEqual(got, want) {
							return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, got, want)
						}
						continue
					}
					if f.Bucket != "" {
						var got map[string]float64
						if bs := r.Features[f.ID].Buckets; bs != nil {
							got = map[string]float64{}
							for b, fv := range bs {
								if fv.Value != nil {
									got[b] = *fv.Value
								}
							}
						}
						want := w.buckets(f, keys[i], T)
						same := (got == nil) == (want == nil) && len(got) == len(want)
						for b, v := range want {
							g, ok := got[b]
							same = same && ok && aggtest.Close(g, v)
						}
						if !same {
							return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, got, want)
						}
						continue
					}
					if f.Aggregation == aggregations.TopK {
						var got any
						if top := r.Features[f.ID].Top; top != nil {
							got = lookup.TopJSON(top, r.Features[f.ID].Type)
						}
						if want := w.top(f, keys[i], T); got != want {
							return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, got, want)
						}
						continue
					}
					if f.OutputType() == aggregations.TypeString {
						fv := r.Features[f.ID]
						var got any
						switch {
						case fv.Strs != nil:
							got = fv.Strs
						case fv.Str != nil:
							got = *fv.Str
						}
						if want := w.strs(f, keys[i], T); !reflect.DeepEqual(got, want) {
							return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, got, want)
						}
						continue
					}
					if f.Aggregation.List() {
						got, want := r.Features[f.ID].List, w.list(f, keys[i], T)
						if !slices.Equal(got, want) || (got == nil) != (want == nil) {
							return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, got, want)
						}
						continue
					}
					got, want := r.Features[f.ID].Value, w.value(cfg, f, keys[i], T)
					if (got == nil) != (want == nil) || (got != nil && !aggtest.Close(*got, *want)) {
						return fmt.Sprintf("%s %s: %v, want %v", keys[i], f.ID, fmtV(got), fmtV(want))
					}
				}
			}
			return ""
		}()
		if last == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the lookup service did not reach the brute force within %s: %s", timeout, last)
}

// jsonValueOf is x as encoding/json decodes its JSON text (nil if x does
// not encode).
func jsonValueOf(x any) any {
	b, err := json.Marshal(x)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

func fmtV(v *float64) any {
	if v == nil {
		return "null"
	}
	return *v
}
