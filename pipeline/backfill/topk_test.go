package backfill

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

var topKFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: shops
    topic: shops-{{ID}}
    schema: shop.avsc
    event_time: ts
features:
  - {name: top_merchants, version: 1, entity: user, source: shops, aggregation: top_k, k: 2, field: merchant, window: 7d, owner: t, description: d}
  - {name: top_amounts, version: 1, entity: user, source: shops, aggregation: top_k, k: 3, field: amount, window: lifetime, owner: t, description: d}
  - {name: amount_sum, version: 1, entity: user, source: shops, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
`

var topKNames = []string{"top_merchants", "top_amounts", "amount_sum"}

// TestTopKInCSVAndParquet: top_k columns of a string and a double field
// in a backfill: CSV cells the JSON text the lookup API writes, Parquet an
// optional LIST of {value, count} groups (value a STRING or a DOUBLE,
// count an INT64), equal at every spine row to aggtest.BruteForceTopK
// (ties by value), null when the window is empty or the key unknown; the
// number column after them (Parquet leaf columns shift by one per top_k
// column) is unchanged; a sharded run (2 shards) writes the same cells;
// the manifest's statistics of a top_k column are those of a list.
func TestTopKInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, topKFile, testkit.SetupOptions{Files: map[string]string{"shop.avsc": shopSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "shops")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	rng := rand.New(rand.NewPCG(13, 13))
	merchants := []string{"m-1", "m-2", "café ☕", `a,"quoted" one`, "grocery", ""}
	type shop struct {
		key, merchant string
		amount        float64
		ts            int64
	}
	var ss []shop
	for i := range 90 {
		key := []string{"a", "b", "c"}[i%3]
		ss = append(ss, shop{key, merchants[rng.IntN(len(merchants))], float64(rng.IntN(5)) * 1.5, now - rng.Int64N(9*24*h)})
	}
	// Key d: nothing in the last 7 days (top_merchants null, EMPTY_WINDOW).
	ss = append(ss, shop{"d", "m-1", 3, now - 12*24*h}, shop{"d", "m-2", 3, now - 12*24*h - 1})
	var recs []*kgo.Record
	for _, s := range ss {
		r, err := enc.Record(map[string]any{"user_id": s.key, "merchant": s.merchant, "amount": s.amount, "ts": s.ts})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	strs := map[string][]aggtest.Typed[string]{}
	nums := map[string][]aggtest.Typed[float64]{}
	evs := map[string][]aggregations.Event{}
	for i, s := range ss {
		seq := aggregations.Seq(recs[i].Partition, recs[i].Offset)
		strs[s.key] = append(strs[s.key], aggtest.Typed[string]{TS: s.ts, Seq: seq, Value: s.merchant})
		nums[s.key] = append(nums[s.key], aggtest.Typed[float64]{TS: s.ts, Seq: seq, Value: s.amount})
		evs[s.key] = append(evs[s.key], aggregations.Event{TS: s.ts, Seq: seq, Value: s.amount})
	}
	// want is the expected cell of feature name for key at T, as text (a
	// top_k's JSON text); null is "" with ok false.
	want := func(name, key string, T int64) (string, bool) {
		f, _ := cfg.Feature(name)
		if !slices.ContainsFunc(evs[key], func(e aggregations.Event) bool { return e.TS < T }) {
			return "", false // NOT_FOUND
		}
		switch name {
		case "top_merchants":
			l, ok := aggtest.BruteForceTopK(f.Window, strs[key], T, f.K)
			var tv []TopValue
			for _, e := range l {
				tv = append(tv, TopValue{Str: e.Value, Count: e.Count})
			}
			if !ok {
				return "", false
			}
			return TopJSON(tv, aggregations.TypeString), true
		case "top_amounts":
			l, ok := aggtest.BruteForceTopK(f.Window, nums[key], T, f.K)
			var tv []TopValue
			for _, e := range l {
				tv = append(tv, TopValue{Value: e.Value, Count: e.Count})
			}
			if !ok {
				return "", false
			}
			return TopJSON(tv, aggregations.TypeDouble), true
		}
		x, _ := aggtest.BruteForce(f.Aggregation, f.Window, evs[key], T)
		return formatFloat(x), true
	}
	var rows []spineRow
	for _, key := range []string{"a", "b", "c", "d", "nobody"} {
		for _, T := range []int64{now - 8*24*h, now - 3*24*h, now - 5*h, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	dir := t.TempDir()
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: topKNames})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		got, nulls := readTops(t, out, format)
		multi, nullTop := 0, 0
		for i, r := range rows {
			for _, name := range topKNames {
				w, ok := want(name, r.key, r.T)
				if got[name][i] != w || nulls[name][i] == ok {
					t.Errorf("%s row %d (%s, T=now%+dh) %s = %s (null %v), want %s (null %v)", format, i, r.key, (r.T-now)/h, name, got[name][i], nulls[name][i], w, !ok)
				}
				if ok && name != "amount_sum" && len(w) > 40 {
					multi++
				}
				if !ok && name == "top_merchants" && r.key != "nobody" {
					nullTop++
				}
			}
		}
		if multi == 0 || nullTop == 0 {
			t.Errorf("%s: %d multi-entry cells, %d empty windows: the test did not reach both", format, multi, nullTop)
		}
		for _, fs := range m.Features {
			if fs.Name == "top_merchants" && fs.Statistics.Kind() != monitor.KindList {
				t.Errorf("%s: statistics of %s: kind %q, want %q", format, fs.Name, fs.Statistics.Kind(), monitor.KindList)
			}
		}
	}
	// Apache Arrow's reader (what pandas and Feast read Parquet with) sees
	// a list of structs.
	if got := arrowSchemaOf(t, filepath.Join(dir, "out.parquet")); !strings.Contains(got, "top_merchants: type=list<element: struct<value: utf8, count: int64>") ||
		!strings.Contains(got, "top_amounts: type=list<element: struct<value: float64, count: int64>") {
		t.Errorf("Arrow schema of the Parquet output:\n%s", got)
	}
	single, singleNulls := readTops(t, filepath.Join(dir, "out.parquet"), "parquet")
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	sharded := filepath.Join(dir, "sharded")
	_, owned := runShards(t, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Features: topKNames}, sharded, 2, 3, rows)
	for i, rs := range owned {
		got, nulls := readTops(t, filepath.Join(sharded, Shard{Index: i, Count: 2}.PartFile()), "parquet")
		for _, name := range topKNames {
			if len(got[name]) != len(rs) {
				t.Fatalf("shard %d: %d rows of %s, want %d", i, len(got[name]), name, len(rs))
			}
			for j, r := range rs {
				if got[name][j] != single[name][r] || nulls[name][j] != singleNulls[name][r] {
					t.Errorf("shard %d row %d (spine row %d) %s = %s, single run %s", i, j, r, name, got[name][j], single[name][r])
				}
			}
		}
	}
}

// readTops reads the columns topKNames of an output as text: a top_k cell
// as TopJSON of its entries (Parquet: from its value and count leaves,
// which must be a LIST of {value, count}), amount_sum as formatFloat; and
// whether each cell is null.
func readTops(t *testing.T, path, format string) (cells map[string][]string, nulls map[string][]bool) {
	t.Helper()
	cells, nulls = map[string][]string{}, map[string][]bool{}
	if format == "csv" {
		tb := readTable(t, path)
		for _, name := range topKNames {
			c := tb.col(t, name)
			for _, row := range tb.cells {
				cells[name] = append(cells[name], row[c])
				nulls[name] = append(nulls[name], row[c] == "")
			}
		}
		return cells, nulls
	}
	f, err := openParquet(t, path)
	if err != nil {
		t.Fatal(err)
	}
	type leaves struct{ value, count int }
	cols := map[string]leaves{}
	types := map[string]aggregations.ValueType{"top_merchants": aggregations.TypeString, "top_amounts": aggregations.TypeDouble}
	for name := range types {
		v, ok1 := f.Schema().Lookup(name, "list", "element", "value")
		c, ok2 := f.Schema().Lookup(name, "list", "element", "count")
		if !ok1 || !ok2 || c.Node.Type().Kind() != parquet.Int64 {
			t.Fatalf("column %s is not a LIST of {value, count}: %v", name, f.Schema())
		}
		cols[name] = leaves{v.ColumnIndex, c.ColumnIndex}
	}
	sum, ok := f.Schema().Lookup("amount_sum")
	if !ok || sum.Node.Type().Kind() != parquet.Double {
		t.Fatalf("amount_sum: %v", sum.Node)
	}
	for _, row := range readParquetRows(t, f) {
		for name, typ := range types {
			var vals, counts []parquet.Value
			for _, v := range row {
				switch v.Column() {
				case cols[name].value:
					vals = append(vals, v)
				case cols[name].count:
					counts = append(counts, v)
				}
			}
			if len(vals) != len(counts) || len(vals) == 0 {
				t.Fatalf("%s: %d values and %d counts in a row", name, len(vals), len(counts))
			}
			if vals[0].IsNull() {
				cells[name] = append(cells[name], "")
				nulls[name] = append(nulls[name], vals[0].DefinitionLevel() == 0)
				continue
			}
			l := make([]TopValue, len(vals))
			for i := range vals {
				l[i].Count = counts[i].Int64()
				if typ == aggregations.TypeString {
					l[i].Str = string(vals[i].ByteArray())
				} else {
					l[i].Value = vals[i].Double()
				}
			}
			cells[name] = append(cells[name], TopJSON(l, typ))
			nulls[name] = append(nulls[name], false)
		}
		for _, v := range row {
			if v.Column() == sum.ColumnIndex {
				s := ""
				if !v.IsNull() {
					s = formatFloat(v.Double())
				}
				cells["amount_sum"] = append(cells["amount_sum"], s)
				nulls["amount_sum"] = append(nulls["amount_sum"], v.IsNull())
			}
		}
	}
	return cells, nulls
}
