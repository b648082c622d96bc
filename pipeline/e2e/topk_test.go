package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
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
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// topKFile has a top_k of each field type the visit schema has: a string,
// a long and a boolean.
var topKFile = testkit.KafkaSection(4) + `entities:
  - name: user
    key: user_id
sources:
  - name: visits
    topic: visits-{{ID}}
    schema: visit.avsc
    event_time: ts
features:
  - {name: top_merchants_7d, version: 1, entity: user, source: visits, aggregation: top_k, k: 3, field: merchant, window: 7d, hop: 6h, owner: t, description: d}
  - {name: top_cards_life, version: 1, entity: user, source: visits, aggregation: top_k, k: 5, field: card, window: lifetime, owner: t, description: d}
  - {name: top_flags_1d, version: 1, entity: user, source: visits, aggregation: top_k, k: 2, field: flag, window: 1d, owner: t, description: d}
`

// topEntry is a top_k entry as text (the value formatted by its type) and
// its count, to compare the three field types alike.
type topEntry struct {
	value string
	count int64
}

// topWant is the brute force of a top_k feature as of T: its entries
// (aggtest.BruteForceTopK), the window's exact counts and number of
// events, and whether the window has more than TopKExactMax distinct
// values (then the served counts may be below the true ones, by at most
// N/(TopKKept+1)).
type topWant struct {
	entries  []topEntry
	counts   map[string]int64
	n        int64
	sketched bool
	ok       bool
}

func bruteTop[V interface {
	comparable
	~string | ~int64 | ~float64
}](w aggregations.Window, k int, evs []aggtest.Typed[V], T int64, text func(V) string) topWant {
	var tw topWant
	top, ok := aggtest.BruteForceTopK(w, evs, T, k)
	tw.ok = ok
	for _, e := range top {
		tw.entries = append(tw.entries, topEntry{text(e.Value), e.Count})
	}
	counts := aggtest.Counts(w, evs, T)
	tw.counts = map[string]int64{}
	for v, c := range counts {
		tw.counts[text(v)] = c
		tw.n += c
	}
	tw.sketched = len(counts) > aggregations.TopKExactMax
	return tw
}

// check compares served entries with the brute force: equal while exact;
// in the summary, each count within N/(TopKKept+1) below the true one, at
// most k entries, most frequent first.
func (tw topWant) check(got []topEntry, ok bool, k int) string {
	switch {
	case ok != tw.ok:
		return fmt.Sprintf("null %v, want null %v", !ok, !tw.ok)
	case !tw.sketched:
		if !slices.Equal(got, tw.entries) {
			return fmt.Sprintf("%v, want %v", got, tw.entries)
		}
		return ""
	case len(got) > k:
		return fmt.Sprintf("%d entries, k %d", len(got), k)
	}
	bound := tw.n / (aggregations.TopKKept + 1)
	for i, e := range got {
		if c := tw.counts[e.value]; e.count > c || e.count < c-bound {
			return fmt.Sprintf("%s counted %d, true %d, bound %d", e.value, e.count, c, bound)
		}
		if i > 0 && e.count > got[i-1].count {
			return fmt.Sprintf("entries out of order: %v", got)
		}
	}
	return ""
}

// TestTopKOnEveryPath: top_k of a string, a long and a boolean field,
// through a real worker and the lookup service (JSON), and through the
// backfill engine (Compute: what Run, its Parquet and CSV, and Feast's
// historical retrieval use), against aggtest.BruteForceTopK over the
// produced typed values: ties, a key past TopKExactMax distinct merchants
// in its window (the summary, within its bound), one whose finite windows
// are empty (null, EMPTY_WINDOW) and an unknown one (null, NOT_FOUND).
// Feast's /get-online-features answers the lookup's JSON text.
func TestTopKOnEveryPath(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, topKFile, testkit.SetupOptions{Files: map[string]string{"visit.avsc": visitSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "visits")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rng := rand.New(rand.NewPCG(21, 2))
	var visits []typedVisit
	add := func(key string, n, pool int, maxAge time.Duration) {
		for range n {
			visits = append(visits, typedVisit{key: key, ts: now.Add(-time.Duration(rng.Int64N(int64(maxAge))) - time.Second).UnixMilli(),
				merchant: fmt.Sprintf("m-%d", min(rng.IntN(pool), rng.IntN(pool))), card: int64(rng.IntN(pool)) - 3, flag: rng.IntN(3) == 0})
		}
	}
	add("huge", 4000, 3000, 8*24*time.Hour) // past 1000 distinct merchants in 7d
	add("wide", 600, 40, 9*24*time.Hour)
	add("narrow", 12, 3, 3*24*time.Hour) // ties
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
	want := func(name, key string, T int64) (topWant, string) {
		f, _ := cfg.Feature(name)
		var ms []aggtest.Typed[string]
		var cs []aggtest.Typed[int64]
		var fs []aggtest.Typed[int64] // false < true as 0 < 1
		var raw []aggregations.Event
		known := false
		for _, v := range visits {
			if v.key != key {
				continue
			}
			known = known || v.ts < T
			ms = append(ms, aggtest.Typed[string]{TS: v.ts, Seq: v.seq, Value: v.merchant})
			cs = append(cs, aggtest.Typed[int64]{TS: v.ts, Seq: v.seq, Value: v.card})
			b := int64(0)
			if v.flag {
				b = 1
			}
			fs = append(fs, aggtest.Typed[int64]{TS: v.ts, Seq: v.seq, Value: b})
			raw = append(raw, aggregations.Event{TS: v.ts, Seq: v.seq})
		}
		var tw topWant
		switch name {
		case "top_merchants_7d":
			tw = bruteTop(f.Window, f.K, ms, T, func(s string) string { return s })
		case "top_cards_life":
			tw = bruteTop(f.Window, f.K, cs, T, func(c int64) string { return strconv.FormatInt(c, 10) })
		default:
			tw = bruteTop(f.Window, f.K, fs, T, func(b int64) string { return strconv.FormatBool(b == 1) })
		}
		inWindow, _ := aggtest.BruteForce(aggregations.Count, f.Window, raw, T)
		switch {
		case !known:
			tw.ok = false
			return tw, lookup.StatusNotFound
		case inWindow == 0:
			return tw, lookup.StatusEmptyWindow
		}
		return tw, lookup.StatusPresent
	}
	// text formats a served entry's value by the feature's type.
	servedEntries := func(name string, l []lookup.TopValue) []topEntry {
		var out []topEntry
		for _, e := range l {
			var s string
			switch name {
			case "top_merchants_7d":
				s = e.Str
			case "top_cards_life":
				s = strconv.FormatInt(int64(e.Value), 10)
			default:
				s = strconv.FormatBool(e.Value != 0)
			}
			out = append(out, topEntry{s, e.Count})
		}
		return out
	}
	names := []string{"top_merchants_7d", "top_cards_life", "top_flags_1d"}
	keys := []string{"huge", "wide", "narrow", "old", "nobody"}

	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	var resp lookup.LookupResponse
	check := func() (bad []string) {
		resp = lookup.LookupResponse{}
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}
		}
		T := resp.AsOf.UnixMilli()
		for _, r := range resp.Results {
			for _, name := range names {
				f, _ := cfg.Feature(name)
				got := r.Features[name]
				tw, status := want(name, r.Key, T)
				if got.Status != status {
					bad = append(bad, fmt.Sprintf("%s %s: status %s, want %s", r.Key, name, got.Status, status))
					continue
				}
				if msg := tw.check(servedEntries(name, got.Top), got.Top != nil, f.K); msg != "" {
					bad = append(bad, fmt.Sprintf("%s %s: %s", r.Key, name, msg))
				}
			}
		}
		return bad
	}
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		bad := check()
		if len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 120s: %v", bad)
		}
	}
	T := resp.AsOf.UnixMilli()
	final := resp
	if tw, _ := want("top_merchants_7d", "huge", T); !tw.sketched {
		t.Errorf("key huge has %d distinct merchants in 7d: the summary was not tested", len(tw.counts))
	}

	// Feast: a top_k is a String, the JSON text the lookup API writes.
	var feast lookup.FeastResponse
	if code := postJSON(t, ls.url+"/get-online-features", map[string]any{
		"features": []string{"visits:top_merchants_7d", "visits:top_flags_1d"}, "entities": map[string][]string{"user_id": keys},
	}, &feast); code != http.StatusOK {
		t.Fatalf("POST /get-online-features: HTTP %d", code)
	}
	for j, name := range []string{"top_merchants_7d", "top_flags_1d"} {
		col := feast.Results[j+1]
		for i, key := range keys {
			tw, status := want(name, key, T)
			switch {
			case status == lookup.StatusNotFound && col.Statuses[i] != "NOT_FOUND",
				status != lookup.StatusNotFound && !tw.ok && col.Statuses[i] != "NULL_VALUE":
				t.Errorf("feast %s of %s: %s %v, want status %s", name, key, col.Statuses[i], col.Values[i], status)
			case tw.ok && !tw.sketched:
				f, _ := cfg.Feature(name)
				var l []lookup.TopValue
				for _, e := range tw.entries {
					switch name {
					case "top_merchants_7d":
						l = append(l, lookup.TopValue{Str: e.value, Count: e.count})
					default:
						x := 0.0
						if e.value == "true" {
							x = 1
						}
						l = append(l, lookup.TopValue{Value: x, Count: e.count})
					}
				}
				if w := lookup.TopJSON(l, f.OutputType()); col.Statuses[i] != "PRESENT" || col.Values[i] != w {
					t.Errorf("feast %s of %s: %s %v, want PRESENT %s", name, key, col.Statuses[i], col.Values[i], w)
				}
			}
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
	for row, p := range points {
		for col, name := range names {
			f, _ := cfg.Feature(name)
			if !v.IsTop(col) {
				t.Fatalf("backfill column %s is not a top_k column", name)
			}
			l, ok := v.Top(row, col)
			served := make([]lookup.TopValue, len(l))
			for i, e := range l {
				served[i] = lookup.TopValue{Value: e.Value, Str: e.Str, Count: e.Count}
			}
			tw, status := want(name, p.Key, p.T)
			if st := v.Status(row, col); st != status {
				t.Errorf("backfill %s at now%+v: %s status %s, want %s", p.Key, time.Duration(p.T-now.UnixMilli())*time.Millisecond, name, st, status)
			}
			if msg := tw.check(servedEntries(name, served), ok, f.K); msg != "" {
				t.Errorf("backfill %s at now%+v: %s: %s", p.Key, time.Duration(p.T-now.UnixMilli())*time.Millisecond, name, msg)
			}
		}
	}

	// skew: the lookup log carries top_k values (JSON text and error); the
	// last lookups reproduce (exactly while exact, within the error past
	// TopKExactMax); a hand-written entry with one count changed is one
	// mismatch.
	served := map[servedAt]bool{}
	record(served, keys, T)
	var rep *skew.Report
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if rep, err = skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Keep: keepServed(served)}); err != nil {
			t.Fatal(err)
		}
		if rep.Entries >= int64(len(keys)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("skew found %d of the %d logged entries after 60s", rep.Entries, len(keys))
		}
	}
	if rep.Entries != int64(len(keys)) || rep.Compared != int64(len(keys)*len(names)) || rep.Mismatches != 0 {
		var sb strings.Builder
		rep.WriteText(&sb)
		t.Fatalf("skew of the last lookups: %d entries, %d compared, %d mismatches; want %d, %d, 0:\n%s", rep.Entries, rep.Compared, rep.Mismatches, len(keys), len(keys)*len(names), sb.String())
	}
	for _, name := range names {
		if f := rep.Feature(name + "@1"); f == nil || !f.Top || f.Rows != int64(len(keys)) {
			t.Fatalf("skew %s: %+v, want a top_k feature with %d rows", name, f, len(keys))
		}
	}
	var cards []lookup.TopValue
	for _, r := range final.Results {
		if r.Key == "wide" {
			cards = slices.Clone(r.Features["top_cards_life"].Top)
		}
	}
	if len(cards) == 0 {
		t.Fatal("no top_cards_life for wide")
	}
	cards[len(cards)-1].Count++
	tat := T + 1 // no event between T and T+1: the same values
	e := &lookuplog.Entry{Entity: "user", Key: "wide", At: tat, Features: map[string]*float64{},
		Tops: map[string]*lookuplog.ServedTop{"top_cards_life@1": {Value: []byte(lookup.TopJSON(cards, aggregations.TypeLong))}}}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("wide"), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if rep, err = skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Keep: func(e *lookuplog.Entry) bool { return e.At == tat }}); err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 1 || rep.Compared != 1 || rep.Mismatches != 1 || len(rep.Feature("top_cards_life@1").Examples) != 1 {
		var sb strings.Builder
		rep.WriteText(&sb)
		t.Fatalf("skew of the tampered entry: %d entries, %d compared, %d mismatches, want 1, 1, 1:\n%s", rep.Entries, rep.Compared, rep.Mismatches, sb.String())
	}

}
