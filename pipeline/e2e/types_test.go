package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// visitSchema has a field of each type approx_distinct takes besides
// double: a string, a long and a nullable boolean.
const visitSchema = `{"type": "record", "name": "Visit", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant", "type": "string"},
  {"name": "card", "type": "long"},
  {"name": "flag", "type": ["null", "boolean"], "default": null},
  {"name": "ts", "type": "long"}]}`

var typedFile = testkit.KafkaSection(4) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: merchants_7d, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: merchant, window: 7d, hop: 6h, owner: t, description: d}
  - {name: cards_life, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: card, window: lifetime, owner: t, description: d}
  - {name: flags_1d, version: 1, entity: user, source: visits, aggregation: approx_distinct, field: flag, window: 1d, owner: t, description: d}
  - {name: card_sum_7d, version: 1, entity: user, source: visits, aggregation: sum, field: card, window: 7d, owner: t, description: d}
`

// typedVisit is one produced visit with its typed values.
type typedVisit struct {
	key      string
	ts, seq  int64
	merchant string
	card     int64
	flag     bool
}

// TestDistinctOfTypedFieldsOnEveryPath counts distinct merchants (strings),
// cards (longs beyond 2^53 that a double would round together) and flags
// (booleans) through a real worker and the lookup service, and through the
// backfill engine (Compute, what Run and skew use), against
// aggtest.BruteForceDistinct over the produced typed values: a key past
// the exact limit (sketch mode), a narrow one, one whose finite windows are
// empty (0, EMPTY_WINDOW) and an unknown one (null, NOT_FOUND).
func TestDistinctOfTypedFieldsOnEveryPath(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, typedFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rng := rand.New(rand.NewPCG(12, 1))
	var visits []typedVisit
	add := func(key string, n, pool int, maxAge time.Duration) {
		for range n {
			visits = append(visits, typedVisit{key: key, ts: now.Add(-time.Duration(rng.Int64N(int64(maxAge))) - time.Second).UnixMilli(),
				merchant: fmt.Sprintf("m-%d", rng.IntN(pool)), card: 1<<58 + rng.Int64N(int64(pool)), flag: rng.IntN(2) == 0})
		}
	}
	add("wide", 1500, 600, 9*24*time.Hour)
	add("narrow", 40, 4, 3*24*time.Hour)
	add("old", 5, 5, time.Hour)
	for i := range visits[len(visits)-5:] {
		visits[len(visits)-5+i].ts -= (20 * 24 * time.Hour).Milliseconds()
	}
	rng.Shuffle(len(visits), func(i, j int) { visits[i], visits[j] = visits[j], visits[i] })
	recs := make([]*kgo.Record, len(visits))
	for i, v := range visits {
		if recs[i], err = enc.Record(map[string]any{"user_id": v.key, "merchant": v.merchant, "card": v.card,
			"flag": map[string]any{"boolean": v.flag}, "ts": v.ts}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		visits[i].seq = aggregations.Seq(r.Partition, r.Offset)
	}
	// want is the brute force of feature name for key as of T, with its
	// status (every visit counts: the sum's events are the same).
	want := func(name, key string, T int64) (float64, string) {
		f, _ := cfg.Feature(name)
		var ms []aggtest.Typed[string]
		var cs []aggtest.Typed[int64]
		var fs []aggtest.Typed[bool]
		var raw []aggregations.Event
		known := false
		for _, v := range visits {
			if v.key != key {
				continue
			}
			known = known || v.ts < T
			ms = append(ms, aggtest.Typed[string]{TS: v.ts, Seq: v.seq, Value: v.merchant})
			cs = append(cs, aggtest.Typed[int64]{TS: v.ts, Seq: v.seq, Value: v.card})
			fs = append(fs, aggtest.Typed[bool]{TS: v.ts, Seq: v.seq, Value: v.flag})
			raw = append(raw, aggregations.Event{TS: v.ts, Seq: v.seq, Value: float64(v.card)})
		}
		var val float64
		switch name {
		case "merchants_7d":
			val = aggtest.BruteForceDistinct(f.Window, ms, T)
		case "cards_life":
			val = aggtest.BruteForceDistinct(f.Window, cs, T)
		case "flags_1d":
			val = aggtest.BruteForceDistinct(f.Window, fs, T)
		default:
			val, _ = aggtest.BruteForce(f.Aggregation, f.Window, raw, T)
		}
		inWindow, _ := aggtest.BruteForce(aggregations.Count, f.Window, raw, T)
		switch {
		case !known:
			return 0, lookup.StatusNotFound
		case inWindow == 0:
			return val, lookup.StatusEmptyWindow
		}
		return val, lookup.StatusPresent
	}
	names := []string{"merchants_7d", "cards_life", "flags_1d", "card_sum_7d"}
	keys := []string{"wide", "narrow", "old", "nobody"}

	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	check := func() (bad []string) {
		var resp lookup.LookupResponse
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}
		}
		T := resp.AsOf.UnixMilli()
		for _, r := range resp.Results {
			for _, name := range names {
				f, _ := cfg.Feature(name)
				got := r.Features[name]
				w, status := want(name, r.Key, T)
				switch {
				case got.Status != status:
					bad = append(bad, fmt.Sprintf("%s %s: status %s, want %s", r.Key, name, got.Status, status))
				case status == lookup.StatusNotFound && got.Value != nil:
					bad = append(bad, fmt.Sprintf("%s %s: %v, want null", r.Key, name, *got.Value))
				case status != lookup.StatusNotFound && (got.Value == nil || !aggtest.Within(f.Aggregation, *got.Value, w)):
					bad = append(bad, fmt.Sprintf("%s %s: %v, want %v", r.Key, name, got.Value, w))
				}
			}
		}
		return bad
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		bad := check()
		if len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 90s: %v", bad)
		}
	}

	var points []backfill.Point
	for _, key := range keys {
		for _, d := range []time.Duration{-48 * time.Hour, -30 * time.Hour, -time.Hour, time.Minute} {
			points = append(points, backfill.Point{Key: key, T: now.Add(d).UnixMilli()})
		}
	}
	v, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: names}, points)
	if err != nil {
		t.Fatal(err)
	}
	sketched := false
	for row, p := range points {
		for col, name := range names {
			f, _ := cfg.Feature(name)
			got, ok := v.Get(row, col)
			w, status := want(name, p.Key, p.T)
			if st := v.Status(row, col); st != status || ok != (status != lookup.StatusNotFound) || (ok && !aggtest.Within(f.Aggregation, got, w)) {
				t.Errorf("backfill %s at now%+v: %s = %v (%v, %s), want %v (%s)", p.Key, time.Duration(p.T-now.UnixMilli())*time.Millisecond, name, got, ok, st, w, status)
			}
			sketched = sketched || (f.Aggregation == aggregations.ApproxDistinct && w > aggregations.DistinctExactMax)
		}
	}
	if !sketched {
		t.Error("no value passed the exact limit: the sketch mode was not tested")
	}
}

var keptFile = testkit.KafkaSection(4) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: last_card, version: 1, entity: user, source: visits, aggregation: last, field: card, window: 7d, owner: t, description: d}
  - {name: first_flag, version: 1, entity: user, source: visits, aggregation: first, field: flag, window: lifetime, owner: t, description: d}
  - {name: cards3, version: 1, entity: user, source: visits, aggregation: last_k, k: 3, field: card, window: 7d, owner: t, description: d}
  - {name: flags2, version: 1, entity: user, source: visits, aggregation: first_k, k: 2, field: flag, window: lifetime, owner: t, description: d}
`

// TestKeptLongsAndBooleansThroughLookup: last, first, last_k and first_k of
// a long and a boolean field, through a real worker and the lookup
// service, answer JSON integers (exact near 2^53) and booleans, equal to
// aggtest.BruteForce / BruteForceList over the produced values; a record
// whose long is beyond 2^53 is dead-lettered (inexact_long) and counts
// nowhere; Feast's /get-online-features answers the same typed values.
func TestKeptLongsAndBooleansThroughLookup(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, keptFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rng := rand.New(rand.NewPCG(5, 5))
	var recs []*kgo.Record
	var vs []typedVisit
	for i := range 30 {
		v := typedVisit{key: []string{"a", "b"}[i%2], ts: now.Add(-time.Duration(rng.Int64N(int64(9 * 24 * time.Hour)))).UnixMilli(),
			card: 1<<53 - rng.Int64N(100), flag: rng.IntN(2) == 0}
		r, err := enc.Record(map[string]any{"user_id": v.key, "merchant": "m", "card": v.card, "flag": map[string]any{"boolean": v.flag}, "ts": v.ts})
		if err != nil {
			t.Fatal(err)
		}
		vs, recs = append(vs, v), append(recs, r)
	}
	raw, err := enc.Source().Schema.Encode(nil, map[string]any{"user_id": "a", "merchant": "m", "card": int64(1<<53 + 1),
		"flag": map[string]any{"boolean": true}, "ts": now.Add(-time.Minute).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	badRec := &kgo.Record{Topic: enc.Source().Topic, Key: []byte("a"), Value: raw}
	if err := cl.ProduceSync(ctx, append(recs, badRec)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		vs[i].seq = aggregations.Seq(r.Partition, r.Offset)
	}
	// want is the JSON text of feature name for key as of T.
	want := func(name, key string, T int64) string {
		f, _ := cfg.Feature(name)
		var evs []aggregations.Event
		for _, v := range vs {
			if v.key != key {
				continue
			}
			x := float64(v.card)
			if f.Field == "flag" {
				x = 0
				if v.flag {
					x = 1
				}
			}
			evs = append(evs, aggregations.Event{TS: v.ts, Seq: v.seq, Value: x})
		}
		text := func(x float64) string {
			if f.Field == "flag" {
				return strconv.FormatBool(x != 0)
			}
			return strconv.FormatInt(int64(x), 10)
		}
		if f.Aggregation.List() {
			l, ok := aggtest.BruteForceList(f.Aggregation, f.Window, evs, T)
			if !ok {
				return "null"
			}
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = text(x)
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
		x, ok := aggtest.BruteForce(f.Aggregation, f.Window, evs, T)
		if !ok {
			return "null"
		}
		return text(x)
	}
	names := []string{"last_card", "first_flag", "cards3", "flags2"}
	keys := []string{"a", "b", "nobody"}
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	var answer struct {
		AsOf    time.Time `json:"as_of"`
		Results []struct {
			Key      string
			Features map[string]struct{ Value json.RawMessage }
		}
	}
	check := func() (bad []string) {
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &answer); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}
		}
		for _, r := range answer.Results {
			for _, name := range names {
				if got, w := string(r.Features[name].Value), want(name, r.Key, answer.AsOf.UnixMilli()); got != w {
					bad = append(bad, fmt.Sprintf("%s %s: %s, want %s", r.Key, name, got, w))
				}
			}
		}
		return bad
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		bad := check()
		if len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 90s: %v", bad)
		}
	}
	// Feast answers the same typed values (JSON integers and booleans).
	var feast struct {
		Results []struct{ Values []json.RawMessage }
	}
	if code := postJSON(t, ls.url+"/get-online-features", map[string]any{
		"features": []string{"visits:last_card", "visits:first_flag", "visits:cards3", "visits:flags2"}, "entities": map[string][]string{"user_id": {"a", "b"}},
	}, &feast); code != http.StatusOK {
		t.Fatalf("POST /get-online-features: HTTP %d", code)
	}
	T := answer.AsOf.UnixMilli()
	for j, name := range names {
		for i, key := range []string{"a", "b"} {
			if got, w := string(feast.Results[j+1].Values[i]), want(name, key, T); got != w {
				t.Errorf("feast %s of %s: %s, want %s", name, key, got, w)
			}
		}
	}
}
