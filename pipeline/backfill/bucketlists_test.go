package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

var bucketListFile = testkit.KafkaSection(3) + testkit.UserTransactions + `features:
  - {name: last_amounts_by_cur, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, bucket: currency, max_buckets: 2, window: 7d, hop: 6h, owner: t, description: d}
  - {name: first_merchants_by_cur, version: 1, entity: user, source: transactions, aggregation: first_k, k: 2, field: merchant_id, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: top_merchants_by_cur, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: merchant_id, bucket: currency, max_buckets: 2, window: 7d, owner: t, description: d}
  - {name: top_amounts_by_merchant, version: 1, entity: user, source: transactions, aggregation: top_k, k: 2, field: amount, bucket: merchant_id, window: lifetime, owner: t, description: d}
  - {name: sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, hop: 6h, owner: t, description: d}
`

var bucketListNames = []string{"last_amounts_by_cur", "first_merchants_by_cur", "top_merchants_by_cur", "top_amounts_by_merchant"}

// wantBucketLists is the brute force of a bucketed first_k, last_k or top_k
// feature as of T, as the Go value encoding/json decodes its JSON text to:
// aggtest.BucketGroups, then per bucket BruteForceList,
// BruteForceStringList or BruteForceTopK; nil for null (an empty window,
// or no event of the key before T).
func wantBucketLists(t *testing.T, evs []bucketEvent, kind aggregations.Kind, w aggregations.Window, maxB int, byMerchant, strField bool, T int64) any {
	t.Helper()
	known := false
	var raw []aggregations.Event
	for _, e := range evs {
		known = known || e.ts < T
		b := e.currency
		if byMerchant {
			b = e.merchant
		}
		raw = append(raw, aggregations.Event{TS: e.ts, Seq: e.seq, Value: e.amount, Str: e.merchant, Bucket: b})
	}
	groups := aggtest.BucketGroups(w, raw, T, maxB)
	if !known || len(groups) == 0 {
		return nil
	}
	m := map[string]any{}
	for key, g := range groups {
		var v any
		var ok bool
		switch {
		case kind == aggregations.TopK && strField:
			var typed []aggtest.Typed[string]
			for _, e := range g {
				typed = append(typed, aggtest.Typed[string]{TS: e.TS, Seq: e.Seq, Value: e.Str})
			}
			var l []aggtest.Counted[string]
			l, ok = aggtest.BruteForceTopK(w, typed, T, w.K())
			var out []map[string]any
			for _, c := range l {
				out = append(out, map[string]any{"value": c.Value, "count": c.Count})
			}
			v = out
		case kind == aggregations.TopK:
			var typed []aggtest.Typed[float64]
			for _, e := range g {
				typed = append(typed, aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value})
			}
			var l []aggtest.Counted[float64]
			l, ok = aggtest.BruteForceTopK(w, typed, T, w.K())
			var out []map[string]any
			for _, c := range l {
				out = append(out, map[string]any{"value": c.Value, "count": c.Count})
			}
			v = out
		case strField:
			var l []string
			l, ok = aggtest.BruteForceStringList(kind, w, g, T)
			v = l
		default:
			var l []float64
			l, ok = aggtest.BruteForceList(kind, w, g, T)
			v = l
		}
		if !ok {
			t.Fatalf("brute force of bucket %q is null: a bucket holds events", key)
		}
		m[key] = v
	}
	return normJSON(t, m)
}

// normJSON is x as encoding/json decodes its JSON text (numbers float64).
func normJSON(t *testing.T, x any) any {
	t.Helper()
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBucketedListsInCSVAndParquet: bucketed last_k (of a double), first_k
// (of a string), and top_k (of a string and of a double) features in a
// backfill, over events produced out of event-time order: CSV cells the
// JSON text of the map ({"EUR":[3.5,1]}, {"EUR":[{"value":"m-1","count":3}]}),
// Parquet a MAP<STRING, LIST<...>> (top_k: of STRUCT<value, count>) as
// Apache Arrow reads it, equal at every spine row to the brute force
// (aggtest.BucketGroups, then BruteForceList, BruteForceStringList or
// BruteForceTopK per bucket), with max_buckets folding into __other__,
// null for an empty window or an unknown key; the sum column after them
// (its Parquet leaf shifts by three leaves per bucketed top_k) is
// unchanged; Compute answers the same maps; the manifest's statistics are
// those of lists; a sharded run (2 shards) writes the same maps as the
// single run.
func TestBucketedListsInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, bucketListFile, testkit.SetupOptions{})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	rng := rand.New(rand.NewPCG(12, 12))
	curs := []string{"EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF"}
	merchants := []string{"m-1", "m-1", "m-2", "m-3", `a,"quoted" one`}
	var evs []bucketEvent
	for i := range 60 {
		key := []string{"a", "b"}[i%2]
		// Event times in random order (not the produce order), over 9 days.
		evs = append(evs, bucketEvent{key, curs[rng.IntN(len(curs))], merchants[rng.IntN(len(merchants))], now - rng.Int64N(9*24*h), float64(rng.IntN(4)) * 1.5, 0})
	}
	tie := now - 7*h // two events at the same time: the later offset is newer
	evs = append(evs, bucketEvent{"a", "JPY", "m-9", tie, 100, 0}, bucketEvent{"a", "JPY", "m-8", tie, 101, 0})
	evs = append(evs, bucketEvent{"old", "USD", "m-2", now - 30*aggregations.Day, 9, 0})
	byKey := produceBucketEvents(t, ctx, cl, enc, evs)

	var rows []spineRow
	for _, key := range []string{"a", "b", "old", "nobody"} {
		for _, T := range []int64{now - 8*24*h, now - 3*24*h, tie, tie + 1, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	want := func(name string, r spineRow) any {
		f, err := cfg.Feature(name)
		if err != nil {
			t.Fatal(err)
		}
		return wantBucketLists(t, byKey[r.key], f.Aggregation, f.Window, f.MaxBuckets, f.Bucket == "merchant_id", f.OutputType() == aggregations.TypeString, r.T)
	}
	check := func(what string, got map[string][]any) {
		t.Helper()
		others, nulls, multi := 0, 0, 0
		for _, name := range bucketListNames {
			if len(got[name]) != len(rows) {
				t.Fatalf("%s: %d rows of %s, want %d", what, len(got[name]), name, len(rows))
			}
			for i, r := range rows {
				w := want(name, r)
				if !reflect.DeepEqual(got[name][i], w) {
					t.Errorf("%s row %d (%s, T=now%+dh) %s =\n %v\nwant\n %v", what, i, r.key, (r.T-now)/h, name, got[name][i], w)
				}
				m, _ := w.(map[string]any)
				if _, ok := m[aggregations.OtherBucket]; ok {
					others++
				}
				if w == nil {
					nulls++
				}
				for _, l := range m {
					if ll, _ := l.([]any); len(ll) > 1 {
						multi++
					}
				}
			}
		}
		if others == 0 || nulls == 0 || multi == 0 {
			t.Errorf("%s: the test did not reach __other__ (%d), null (%d) and a list of several values (%d)", what, others, nulls, multi)
		}
	}
	dir := t.TempDir()
	var singleMan *Manifest // the Parquet run's
	features := append(append([]string{}, bucketListNames...), "sum_7d")
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: features})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		// The manifest's statistics of a map of lists are those of the
		// brute force's lists one after the other by increasing key (a
		// top_k's values without counts), as the worker computes them.
		singleMan = m
		for _, mf := range m.Features {
			if mf.Statistics == nil || (mf.Name != "sum_7d" && mf.Statistics.Kind() != monitor.KindList) {
				t.Errorf("%s: manifest statistics of %s: %v, want a list's", format, mf.Name, mf.Statistics)
				continue
			}
			if mf.Name == "sum_7d" {
				continue
			}
			ws := monitor.NewStats()
			for _, r := range rows {
				addFlattened(ws, want(mf.Name, r))
			}
			if got, w := mf.Statistics.Summary(), ws.Summary(); !reflect.DeepEqual(got, w) {
				t.Errorf("%s: manifest statistics of %s:\n%+v\nwant\n%+v", format, mf.Name, got, w)
			}
		}
		var got map[string][]any
		if format == "csv" {
			got = readCSVJSON(t, out, bucketListNames)
		} else {
			var schema string
			got, schema = readArrowJSON(t, out, features)
			for _, s := range []string{
				"last_amounts_by_cur: type=map<utf8, list<element: float64>",
				"first_merchants_by_cur: type=map<utf8, list<element: utf8>",
				"top_merchants_by_cur: type=map<utf8, list<element: struct<value: utf8, count: int64>",
				"top_amounts_by_merchant: type=map<utf8, list<element: struct<value: float64, count: int64>",
				"sum_7d: type=float64",
			} {
				if !strings.Contains(schema, s) {
					t.Errorf("Arrow schema of the Parquet output has no %q:\n%s", s, schema)
				}
			}
		}
		check(format, got)
		// The sum after the maps is read from its own column.
		sums := got["sum_7d"]
		if format == "csv" {
			sums = readCSVJSON(t, out, []string{"sum_7d"})["sum_7d"]
		}
		for i, r := range rows {
			var raw []aggregations.Event
			known := false
			for _, e := range byKey[r.key] {
				raw = append(raw, aggregations.Event{TS: e.ts, Seq: e.seq, Value: e.amount})
				known = known || e.ts < r.T
			}
			f, _ := cfg.Feature("sum_7d")
			x, _ := aggtest.BruteForce(f.Aggregation, f.Window, raw, r.T)
			var w any
			if known {
				w = x
			}
			if got, ok := sums[i].(float64); (w == nil) != (sums[i] == nil) || (w != nil && (!ok || !aggtest.Close(got, x))) {
				t.Errorf("%s row %d sum_7d = %v, want %v", format, i, sums[i], w)
			}
		}
	}

	// Compute answers the same maps.
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: bucketListNames}, points)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	got := map[string][]any{}
	for c, name := range bucketListNames {
		shape := v.BucketShape(c)
		if !v.IsBuckets(c) || v.IsTop(c) || v.IsList(c) || shape == BucketScalars {
			t.Fatalf("%s: IsBuckets %v, IsTop %v, IsList %v, shape %d", name, v.IsBuckets(c), v.IsTop(c), v.IsList(c), shape)
		}
		f, _ := cfg.Feature(name)
		for i := range rows {
			cells, ok := v.Buckets(i, c)
			var cell any
			if ok {
				m := map[string]any{}
				for _, b := range cells {
					switch {
					case !b.OK:
						m[b.Key] = nil
					case shape == BucketTops:
						var l []map[string]any
						for _, x := range b.Top {
							var val any = x.Value
							if f.OutputType() == aggregations.TypeString {
								val = x.Str
							}
							l = append(l, map[string]any{"value": val, "count": x.Count})
						}
						m[b.Key] = l
					case f.OutputType() == aggregations.TypeString:
						m[b.Key] = b.Strs
					default:
						m[b.Key] = b.List
					}
				}
				cell = normJSON(t, m)
			}
			got[name] = append(got[name], cell)
		}
	}
	check("Compute", got)

	// A sharded run writes the same maps, row by row.
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	single, _ := readArrowJSON(t, filepath.Join(dir, "out.parquet"), bucketListNames)
	sharded := filepath.Join(dir, "sharded")
	ds, owned := runShards(t, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Features: features}, sharded, 2, 3, rows)
	for i, rs := range owned {
		got, _ := readArrowJSON(t, filepath.Join(sharded, Shard{Index: i, Count: 2}.PartFile()), bucketListNames)
		for _, name := range bucketListNames {
			if len(got[name]) != len(rs) {
				t.Fatalf("shard %d: %d rows of %s, want %d", i, len(got[name]), name, len(rs))
			}
			for j, r := range rs {
				if !reflect.DeepEqual(got[name][j], single[name][r]) {
					t.Errorf("shard %d row %d (spine row %d) %s = %v, single run %v", i, j, r, name, got[name][j], single[name][r])
				}
			}
		}
	}
	for j, mf := range ds.Features {
		if got, w := mf.Statistics.Summary(), singleMan.Features[j].Statistics.Summary(); mf.Name != "sum_7d" && !sameSummary(got, w) {
			t.Errorf("sharded: manifest statistics of %s:\n%+v\nsingle run\n%+v", mf.Name, got, w)
		}
	}
}

// addFlattened adds a map of lists (as wantBucketLists gives it; nil:
// null) to s as one list: the buckets' lists one after the other by
// increasing key, a top_k entry's value without its count; strings when
// the elements are strings.
func addFlattened(s *monitor.Stats, m any) {
	var nums []float64
	var strs []string
	isStr := false
	mm, _ := m.(map[string]any)
	for _, k := range slices.Sorted(maps.Keys(mm)) {
		for _, x := range mm[k].([]any) {
			if o, ok := x.(map[string]any); ok {
				x = o["value"]
			}
			switch v := x.(type) {
			case string:
				strs, isStr = append(strs, v), true
			case float64:
				nums = append(nums, v)
			}
		}
	}
	if isStr {
		s.AddStringList(strs, m != nil)
		return
	}
	s.AddList(nums, m != nil)
}

// readCSVJSON reads the named columns of a CSV output, each cell decoded
// as JSON text (an empty cell: nil).
func readCSVJSON(t *testing.T, path string, names []string) map[string][]any {
	t.Helper()
	tb := readTable(t, path)
	out := map[string][]any{}
	for _, name := range names {
		c := tb.col(t, name)
		for i, row := range tb.cells {
			var x any
			if !tb.null[i][c] {
				if err := json.Unmarshal([]byte(row[c]), &x); err != nil {
					t.Fatalf("%s row %d: %q: %v", name, i, row[c], err)
				}
			}
			out[name] = append(out[name], x)
		}
	}
	return out
}

// readArrowJSON reads the named columns of a Parquet output with Apache
// Arrow's reader (what pandas, pyarrow and Feast read it with), each cell
// as the Go value encoding/json decodes Arrow's own JSON rendering of it
// to (a map column as an object from key to value; null: nil), and the
// Arrow schema.
func readArrowJSON(t *testing.T, path string, names []string) (map[string][]any, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	out := map[string][]any{}
	for _, name := range names {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) != 1 {
			t.Fatalf("no column %s in %s", name, tbl.Schema())
		}
		for _, chunk := range tbl.Column(idx[0]).Data().Chunks() {
			for i := range chunk.Len() {
				if chunk.IsNull(i) {
					out[name] = append(out[name], nil)
					continue
				}
				m, ok := chunk.(*array.Map)
				if !ok {
					out[name] = append(out[name], normJSON(t, chunk.GetOneForMarshal(i)))
					continue
				}
				keys, ok := m.Keys().(*array.String)
				if !ok {
					t.Fatalf("%s: map keys %s, want utf8", name, m.Keys().DataType())
				}
				cell := map[string]any{}
				start, end := m.ValueOffsets(i)
				for j := int(start); j < int(end); j++ {
					cell[keys.Value(j)] = m.Items().GetOneForMarshal(j)
				}
				out[name] = append(out[name], normJSON(t, cell))
			}
		}
	}
	return out, fmt.Sprint(tbl.Schema())
}

// TestBucketedListsOfLongsAndBooleans: bucketed last_k of a long field,
// first_k of a boolean field and top_k of a boolean field (bucket: a
// string field) are written as Parquet MAP<STRING, LIST<INT64>>,
// MAP<STRING, LIST<BOOLEAN>> and MAP<STRING, LIST<STRUCT<value: BOOLEAN,
// count>>> (as Arrow reads them) and in CSV as JSON text with whole
// numbers and true/false, equal to the brute force (false before true on
// a tie of counts).
func TestBucketedListsOfLongsAndBooleans(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(2)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: logins, topic: logins-{{ID}}, schema: login.avsc, event_time: ts}
features:
  - {name: times_by_country, version: 1, entity: user, source: logins, aggregation: last_k, k: 2, field: ts, bucket: country, window: lifetime, owner: t, description: d}
  - {name: oks_by_country, version: 1, entity: user, source: logins, aggregation: first_k, k: 3, field: success, bucket: country, max_buckets: 1, window: lifetime, owner: t, description: d}
  - {name: top_ok_by_country, version: 1, entity: user, source: logins, aggregation: top_k, k: 2, field: success, bucket: country, window: lifetime, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "logins")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	rng := rand.New(rand.NewPCG(3, 4))
	type login struct {
		key, country string
		ok           bool
		ts           int64
		seq          int64
	}
	var ls []login
	var recs []*kgo.Record
	for i := range 40 {
		l := login{[]string{"a", "b"}[i%2], []string{"DE", "FR", "FR", "IT"}[rng.IntN(4)], rng.IntN(3) > 0, now - rng.Int64N(5*aggregations.Day), 0}
		r, err := enc.Record(map[string]any{"user_id": l.key, "ts": l.ts, "country": l.country, "success": l.ok})
		if err != nil {
			t.Fatal(err)
		}
		ls, recs = append(ls, l), append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i := range ls {
		ls[i].seq = aggregations.Seq(recs[i].Partition, recs[i].Offset)
	}
	var rows []spineRow
	for _, key := range []string{"a", "b", "nobody"} {
		for _, T := range []int64{now - 3*aggregations.Day, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	names := []string{"times_by_country", "oks_by_country", "top_ok_by_country"}
	want := func(name string, r spineRow) any {
		f, err := cfg.Feature(name)
		if err != nil {
			t.Fatal(err)
		}
		var evs []aggregations.Event
		var typed []aggtest.Typed[float64]
		for _, l := range ls {
			if l.key != r.key {
				continue
			}
			v := float64(l.ts)
			if f.Field == "success" {
				v = 0
				if l.ok {
					v = 1
				}
			}
			evs = append(evs, aggregations.Event{TS: l.ts, Seq: l.seq, Value: v, Bucket: l.country})
		}
		groups := aggtest.BucketGroups(f.Window, evs, r.T, f.MaxBuckets)
		if len(groups) == 0 {
			return nil
		}
		asType := func(x float64) any {
			if f.Field == "success" {
				return x != 0
			}
			return int64(x)
		}
		m := map[string]any{}
		for b, g := range groups {
			var out []any
			if f.Aggregation == aggregations.TopK {
				typed = typed[:0]
				for _, e := range g {
					typed = append(typed, aggtest.Typed[float64]{TS: e.TS, Seq: e.Seq, Value: e.Value})
				}
				top, _ := aggtest.BruteForceTopK(f.Window, typed, r.T, f.K)
				for _, c := range top {
					out = append(out, map[string]any{"value": asType(c.Value), "count": c.Count})
				}
			} else {
				l, _ := aggtest.BruteForceList(f.Aggregation, f.Window, g, r.T)
				for _, x := range l {
					out = append(out, asType(x))
				}
			}
			m[b] = out
		}
		return normJSON(t, m)
	}
	dir := t.TempDir()
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		if _, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: names}); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		var got map[string][]any
		if format == "csv" {
			got = readCSVJSON(t, out, names)
		} else {
			var schema string
			got, schema = readArrowJSON(t, out, names)
			for _, s := range []string{
				"times_by_country: type=map<utf8, list<element: int64>",
				"oks_by_country: type=map<utf8, list<element: bool>",
				"top_ok_by_country: type=map<utf8, list<element: struct<value: bool, count: int64>",
			} {
				if !strings.Contains(schema, s) {
					t.Errorf("Arrow schema of the Parquet output has no %q:\n%s", s, schema)
				}
			}
		}
		others := 0
		for _, name := range names {
			for i, r := range rows {
				w := want(name, r)
				if !reflect.DeepEqual(got[name][i], w) {
					t.Errorf("%s row %d (%s, T=%d) %s =\n %v\nwant\n %v", format, i, r.key, r.T, name, got[name][i], w)
				}
				if m, _ := w.(map[string]any); m[aggregations.OtherBucket] != nil {
					others++
				}
			}
		}
		if others == 0 {
			t.Errorf("%s: the test did not reach __other__", format)
		}
	}
}

// TestBucketedTopKPastExact: a bucket with more than
// aggregations.TopKExactMax distinct values in its window keeps the
// frequent-items summary an unbucketed top_k keeps: over the same events
// (every event in one bucket) the bucket's list and error (BucketCell.Top,
// TopErr > 0) are the unbucketed feature's (Values.Top, TopError), and the
// counts are within the error of the true ones.
func TestBucketedTopKPastExact(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(1)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: top_by_cur, version: 1, entity: user, source: transactions, aggregation: top_k, k: 3, field: merchant_id, bucket: currency, window: lifetime, owner: t, description: d}
  - {name: top, version: 1, entity: user, source: transactions, aggregation: top_k, k: 3, field: merchant_id, window: lifetime, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	n := aggregations.TopKExactMax + 300
	truth := map[string]int64{}
	var recs []*kgo.Record
	for i := range n {
		m := fmt.Sprintf("m-%d", i) // distinct values, and a few frequent ones
		if i%10 == 0 {
			m = fmt.Sprintf("hot-%d", i%30)
		}
		truth[m]++
		r, err := enc.Record(map[string]any{"user_id": "u", "ts": now - int64(n-i)*1000, "merchant_id": m, "amount": 1.0, "currency": "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: []string{"top_by_cur", "top"}}, []Point{{Key: "u", T: now + 1}})
	if err != nil {
		t.Fatal(err)
	}
	cells, ok := v.Buckets(0, 0)
	top, topOK := v.Top(0, 1)
	if !ok || len(cells) != 1 || cells[0].Key != "EUR" || !cells[0].OK || !topOK {
		t.Fatalf("bucketed %+v (%v), unbucketed %+v (%v)", cells, ok, top, topOK)
	}
	c := cells[0]
	if c.TopErr == 0 || c.TopErr != v.TopError(0, 1) || !reflect.DeepEqual(c.Top, top) {
		t.Errorf("bucket EUR: %+v error %d; unbucketed %+v error %d (want equal, error > 0 past %d distinct values)", c.Top, c.TopErr, top, v.TopError(0, 1), aggregations.TopKExactMax)
	}
	for _, x := range c.Top {
		if x.Count > truth[x.Str] || x.Count < truth[x.Str]-c.TopErr {
			t.Errorf("%s: count %d, true %d, error %d", x.Str, x.Count, truth[x.Str], c.TopErr)
		}
	}
}
