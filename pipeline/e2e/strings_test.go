package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// stringFile keeps the merchant of visitSchema (a string): the last one in
// 7d and the last three in 7d, next to a count of the same source.
var stringFile = testkit.KafkaSection(4) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: last_merchant, version: 1, entity: user, source: visits, aggregation: last, field: merchant, window: 7d, hop: 6h, owner: t, description: d}
  - {name: merchants3, version: 1, entity: user, source: visits, aggregation: last_k, k: 3, field: merchant, window: 7d, owner: t, description: d}
  - {name: visits_7d, version: 1, entity: user, source: visits, aggregation: count, window: 7d, owner: t, description: d}
`

// TestStringFeaturesOnEveryPath: a string last and a string last_k, through
// a real worker and the lookup service (JSON strings and arrays of
// strings), a backfill (CSV and Parquet) and skew, each checked against
// aggtest.BruteForceString / BruteForceStringList over the produced
// visits (non-ASCII text, quotes, commas, the empty string, a tie on event
// time broken by offset, a key whose 7d window is empty, an unknown key).
// skew finds no mismatch in the lookups logged once the service caught up,
// and exactly the two values tampered with in an entry written by hand.
func TestStringFeaturesOnEveryPath(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, stringFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rng := rand.New(rand.NewPCG(12, 5))
	merchants := []string{"m-1", "m-2", "café ☕ 日本", `with "quotes", commas`, "", "grocery"}
	var vs []typedVisit
	for i := range 80 {
		vs = append(vs, typedVisit{key: []string{"a", "b", "c"}[i%3], ts: now.Add(-time.Duration(rng.Int64N(int64(9*24*time.Hour))) - time.Second).UnixMilli(),
			merchant: merchants[rng.IntN(len(merchants))]})
	}
	tie := now.Add(-2 * time.Hour).UnixMilli()
	vs = append(vs, typedVisit{key: "a", ts: tie, merchant: "tie-first"}, typedVisit{key: "a", ts: tie, merchant: "tie-later"}, // offset order
		typedVisit{key: "old", ts: now.Add(-20 * 24 * time.Hour).UnixMilli(), merchant: "long ago"})
	recs := make([]*kgo.Record, len(vs))
	for i, v := range vs {
		if recs[i], err = enc.Record(map[string]any{"user_id": v.key, "merchant": v.merchant, "card": int64(i),
			"flag": map[string]any{"boolean": true}, "ts": v.ts}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	evs := map[string][]aggregations.Event{}
	for i, r := range recs {
		evs[vs[i].key] = append(evs[vs[i].key], aggregations.Event{TS: vs[i].ts, Seq: aggregations.Seq(r.Partition, r.Offset), Str: vs[i].merchant})
	}
	// want is the JSON text of feature name for key as of T: a string, an
	// array of strings, a count, or null.
	want := func(name, key string, T int64) string {
		f, _ := cfg.Feature(name)
		var v any
		switch {
		case f.Aggregation == aggregations.Count: // null when NOT_FOUND
			if slices.ContainsFunc(evs[key], func(e aggregations.Event) bool { return e.TS < T }) {
				v, _ = aggtest.BruteForce(f.Aggregation, f.Window, evs[key], T)
			}
		case f.Aggregation.List():
			if l, ok := aggtest.BruteForceStringList(f.Aggregation, f.Window, evs[key], T); ok {
				v = l
			}
		default:
			if s, ok := aggtest.BruteForceString(f.Aggregation, f.Window, evs[key], T); ok {
				v = s
			}
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	names := []string{"last_merchant", "merchants3", "visits_7d"}
	keys := []string{"a", "b", "c", "old", "nobody"}

	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	live, err := monitor.NewLive(reg, monitor.LiveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Registerer: reg, Stats: live}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	var answer stringAnswer
	calls := 0 // answered lookups: each logs every key
	check := func() (bad []string) {
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &answer); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}
		}
		calls++
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
	at := answer.AsOf.UnixMilli()
	statusOf := func(key, name string) string {
		_, st := answer.get(key, name)
		return st
	}
	// The rules by example (the brute force above is the definition).
	if got, _ := answer.get("a", "merchants3"); !strings.Contains(string(got), `"tie-later","tie-first"`) {
		t.Errorf("a merchants3 = %s, want the tie newest first in offset order", got)
	}
	if s := statusOf("old", "last_merchant"); s != "EMPTY_WINDOW" {
		t.Errorf("old last_merchant status %s, want EMPTY_WINDOW", s)
	}
	if s := statusOf("nobody", "merchants3"); s != "NOT_FOUND" {
		t.Errorf("nobody merchants3 status %s, want NOT_FOUND", s)
	}

	// The worker's statistics of the string features: top values (and
	// list lengths), no numbers.
	for id, kind := range map[string]monitor.Kind{"last_merchant@1": monitor.KindString, "merchants3@1": monitor.KindList} {
		waitFor(t, id+" statistics", 60*time.Second, func() bool { s := live.Window(id); return s != nil && s.Count() > 0 })
		if sum := live.Window(id).Summary(); sum.Kind != kind || len(sum.Top) == 0 || sum.Mean != nil {
			t.Errorf("worker statistics of %s: %+v, want %s values with top values and no mean", id, sum, kind)
		}
	}

	// Backfill, CSV and Parquet: the same strings at each spine row.
	var spine strings.Builder
	spine.WriteString("user_id,timestamp\n")
	type row struct {
		key string
		T   int64
	}
	var rows []row
	for _, key := range keys {
		for _, d := range []time.Duration{-8 * 24 * time.Hour, -3 * 24 * time.Hour, -2 * time.Hour, -2*time.Hour + time.Millisecond, time.Minute} {
			rows = append(rows, row{key, now.Add(d).UnixMilli()})
			fmt.Fprintf(&spine, "%s,%d\n", key, now.Add(d).UnixMilli())
		}
	}
	spinePath := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spinePath, []byte(spine.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	strNames := names[:2]
	for _, format := range []string{"csv", "parquet"} {
		out := filepath.Join(dir, "train."+format)
		if _, err := backfill.Run(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Spine: spinePath, Out: out, Features: strNames}); err != nil {
			t.Fatalf("%s backfill: %v", format, err)
		}
		got := readStringCells(t, out, format, strNames)
		for i, r := range rows {
			for _, name := range strNames {
				w := want(name, r.key, r.T)
				if format == "csv" { // a string as it is, a list as its JSON text, null empty
					var s string
					if json.Unmarshal([]byte(w), &s) == nil {
						w = s
					} else if w == "null" {
						w = ""
					}
				}
				if got[name][i] != w {
					t.Errorf("%s backfill %s at now%+v: %s = %s, want %s", format, r.key, time.Duration(r.T-now.UnixMilli())*time.Millisecond, name, got[name][i], w)
				}
			}
		}
	}

	// skew: the caught-up lookup reproduces exactly; an entry written by
	// hand with two tampered values gives exactly two mismatches.
	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), 60*time.Second)
	served := map[servedAt]bool{}
	record(served, keys, at)
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Keep: keepServed(served)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != int64(len(keys)) || rep.Compared != int64(len(keys)*len(names)) || rep.Mismatches != 0 {
		t.Fatalf("skew of the caught-up lookups: %d entries, %d compared, %d mismatches; want %d, %d, 0", rep.Entries, rep.Compared, rep.Mismatches, len(keys), len(keys)*len(names))
	}
	for _, id := range []string{"last_merchant@1", "merchants3@1"} {
		if f := rep.Feature(id); f == nil || !f.String || f.Rows != int64(len(keys)) {
			t.Fatalf("skew %s: %+v, want a string feature with %d rows", id, f, len(keys))
		}
	}
	tat := at + 1 // no event between at and at+1: the same values
	raw, _ := answer.get("b", "last_merchant")
	var lastB string
	if err := json.Unmarshal(raw, &lastB); err != nil {
		t.Fatalf("b last_merchant %s: %v", raw, err)
	}
	lastB += "x"
	var listB []string
	raw, _ = answer.get("b", "merchants3")
	if err := json.Unmarshal(raw, &listB); err != nil || len(listB) == 0 {
		t.Fatalf("b merchants3: %v %v", listB, err)
	}
	listB[len(listB)-1] = "tampered"
	count, _ := cfg.Feature("visits_7d")
	c, _ := aggtest.BruteForce(count.Aggregation, count.Window, evs["b"], tat)
	e := &lookuplog.Entry{Entity: "user", Key: "b", At: tat, Features: map[string]*float64{"visits_7d@1": &c},
		Strings: map[string]*string{"last_merchant@1": &lastB}, StringLists: map[string][]string{"merchants3@1": listB}}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("b"), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep, err = skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Keep: func(e *lookuplog.Entry) bool { return e.At == tat }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 1 || rep.Compared != 3 || rep.Mismatches != 2 || rep.Feature("last_merchant@1").Mismatches != 1 || rep.Feature("merchants3@1").Mismatches != 1 {
		var sb strings.Builder
		rep.WriteText(&sb)
		t.Fatalf("skew of the tampered entry: %d entries, %d compared, %d mismatches, want 1, 3, 2:\n%s", rep.Entries, rep.Compared, rep.Mismatches, sb.String())
	}
}

// stringAnswer is a /v1/lookup answer with raw JSON values.
type stringAnswer struct {
	AsOf    time.Time `json:"as_of"`
	Results []struct {
		Key      string
		Features map[string]struct {
			Value  json.RawMessage
			Status string
		}
	}
}

// get returns the raw JSON value and status of feature name for key.
func (a *stringAnswer) get(key, name string) (json.RawMessage, string) {
	for _, r := range a.Results {
		if r.Key == key {
			return r.Features[name].Value, r.Features[name].Status
		}
	}
	return nil, ""
}

// readStringCells reads the string feature columns names of a backfill
// output as text: a CSV's cells as written; a Parquet file's values as
// JSON text (a string quoted, a list an array, null "null").
func readStringCells(t *testing.T, path, format string, names []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	if format == "csv" {
		tb := readCSV(t, path)
		for _, name := range names {
			c := -1
			for i, h := range tb[0] {
				if h == name {
					c = i
				}
			}
			if c < 0 {
				t.Fatalf("%s: no column %s in %v", path, name, tb[0])
			}
			for _, r := range tb[1:] {
				out[name] = append(out[name], r[c])
			}
		}
		return out
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	cols := map[int]string{}
	list := map[string]bool{}
	for _, name := range names {
		leaf, ok := pf.Schema().Lookup(name, "list", "element")
		list[name] = ok
		if !ok {
			leaf, _ = pf.Schema().Lookup(name)
		}
		if leaf.Node == nil || leaf.Node.Type().Kind() != parquet.ByteArray {
			t.Fatalf("%s: column %s is %v, want BYTE_ARRAY strings", path, name, leaf.Node)
		}
		cols[leaf.ColumnIndex] = name
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			vals, null := map[string][]string{}, map[string]bool{}
			for _, v := range row {
				if name, ok := cols[v.Column()]; ok {
					if v.IsNull() {
						null[name] = true
					} else {
						vals[name] = append(vals[name], string(v.ByteArray()))
					}
				}
			}
			for _, name := range names {
				var v any
				switch {
				case null[name]:
				case list[name]:
					v = vals[name]
				default:
					v = vals[name][0]
				}
				b, _ := json.Marshal(v)
				out[name] = append(out[name], string(b))
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
