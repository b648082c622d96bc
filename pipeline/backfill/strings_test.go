package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	pformat "github.com/parquet-go/parquet-go/format"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

const shopSchema = `{"type": "record", "name": "Shop", "namespace": "featurepipe.test", "fields": [
  {"name": "user_id", "type": "string"},
  {"name": "merchant", "type": "string"},
  {"name": "amount", "type": "double"},
  {"name": "ts", "type": "long"}]}`

var stringFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: shops
    topic: shops-{{ID}}
    schema: shop.avsc
    event_time: ts
features:
  - {name: last_merchant, version: 1, entity: user, source: shops, aggregation: last, field: merchant, window: 7d, owner: t, description: d}
  - {name: first_merchant, version: 1, entity: user, source: shops, aggregation: first, field: merchant, window: lifetime, owner: t, description: d}
  - {name: merchants3, version: 1, entity: user, source: shops, aggregation: last_k, k: 3, field: merchant, window: 7d, owner: t, description: d}
  - {name: first_merchants2, version: 1, entity: user, source: shops, aggregation: first_k, k: 2, field: merchant, window: 1d, owner: t, description: d}
  - {name: amount_sum, version: 1, entity: user, source: shops, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
`

// stringNames are the string features of stringFile, then its number one.
var stringNames = []string{"last_merchant", "first_merchant", "merchants3", "first_merchants2", "amount_sum"}

// TestStringFeaturesInCSVAndParquet: last, first, last_k and first_k of a
// string field carry the strings themselves into a backfill: Parquet
// STRING columns (BYTE_ARRAY, UTF8; LISTs of them), CSV cells as the
// string (lists as JSON arrays of strings), equal at every spine row to
// aggtest.BruteForceString / BruteForceStringList (ties on ts broken by
// offset; commas, quotes and non-ASCII text as they are); the number
// feature of the same source is unchanged; a sharded run (2 shards) writes
// the same cells; Compute answers the same strings; the manifest's
// statistics of a string column are its top values.
func TestStringFeaturesInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, stringFile, testkit.SetupOptions{Files: map[string]string{"shop.avsc": shopSchema}})
	ctx := context.Background()
	enc, err := produce.NewEncoder(cfg, "shops")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	rng := rand.New(rand.NewPCG(12, 12))
	merchants := []string{"m-1", "m-2", "café ☕", `a,"quoted" one`, "grocery", ""}
	type shop struct {
		key, merchant string
		amount        float64
		ts            int64
	}
	var ss []shop
	for i := range 60 {
		key := []string{"a", "b", "c"}[i%3]
		ss = append(ss, shop{key, merchants[rng.IntN(len(merchants))], float64(rng.IntN(100)), now - rng.Int64N(9*24*h)})
	}
	// A tie on ts: the later offset is later.
	ss = append(ss, shop{"a", "tie-1", 1, now - 5*h}, shop{"a", "tie-2", 2, now - 5*h})
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
	evs := map[string][]aggregations.Event{}
	for i, s := range ss {
		evs[s.key] = append(evs[s.key], aggregations.Event{TS: s.ts, Seq: aggregations.Seq(recs[i].Partition, recs[i].Offset), Value: s.amount, Str: s.merchant})
	}
	// want is the expected cell of feature name for key at T: the string,
	// a list's JSON text, a number's text; null is "" with ok false.
	want := func(name, key string, T int64) (cell string, ok bool) {
		f, _ := cfg.Feature(name)
		if !slices.ContainsFunc(evs[key], func(e aggregations.Event) bool { return e.TS < T }) {
			return "", false // NOT_FOUND
		}
		switch {
		case f.Field == "amount":
			x, _ := aggtest.BruteForce(f.Aggregation, f.Window, evs[key], T)
			return formatFloat(x), true
		case f.Aggregation.List():
			l, ok := aggtest.BruteForceStringList(f.Aggregation, f.Window, evs[key], T)
			if !ok {
				return "", false
			}
			b, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			return string(b), true
		}
		return aggtest.BruteForceString(f.Aggregation, f.Window, evs[key], T)
	}
	var rows []spineRow
	for _, key := range []string{"a", "b", "c", "nobody"} {
		for _, T := range []int64{now - 8*24*h, now - 3*24*h, now - 5*h, now - 5*h + 1, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	dir := t.TempDir()
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: stringNames})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		got, nulls := readStrings(t, out, format)
		multi, empties := 0, 0
		for i, r := range rows {
			for _, name := range stringNames {
				w, ok := want(name, r.key, r.T)
				// CSV cannot tell null from an empty string; Parquet can.
				if got[name][i] != w || (format == "parquet" && nulls[name][i] == ok) {
					t.Errorf("%s row %d (%s, T=now%+dh) %s = %q (null %v), want %q (null %v)", format, i, r.key, (r.T-now)/h, name, got[name][i], nulls[name][i], w, !ok)
				}
				if ok && w == "" {
					empties++
				}
				if len(w) > 0 && w[0] == '[' && json.Valid([]byte(w)) {
					var l []string
					if json.Unmarshal([]byte(w), &l) == nil && len(l) >= 2 {
						multi++
					}
				}
			}
		}
		if multi == 0 {
			t.Errorf("%s: no list had two strings", format)
		}
		// The manifest's baseline of a string column: its top values.
		for _, fs := range m.Features {
			if fs.Name != "last_merchant" && fs.Name != "merchants3" {
				continue
			}
			top, _ := fs.Statistics.Top(10)
			wantKind := map[string]monitor.Kind{"last_merchant": monitor.KindString, "merchants3": monitor.KindList}[fs.Name]
			if fs.Statistics.Kind() != wantKind || len(top) == 0 {
				t.Errorf("%s: statistics of %s: kind %q, top %v; want kind %q with top values", format, fs.Name, fs.Statistics.Kind(), top, wantKind)
			}
		}
		if format == "parquet" && empties == 0 {
			t.Errorf("%s: no cell was the empty string (a value, not a null)", format)
		}
	}
	// A sharded run writes the same strings: each shard's rows are the
	// single Parquet run's rows of its keys.
	single, singleNulls := readStrings(t, filepath.Join(dir, "out.parquet"), "parquet")
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	sharded := filepath.Join(dir, "sharded")
	_, owned := runShards(t, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Features: stringNames}, sharded, 2, 3, rows)
	for i, rs := range owned {
		got, nulls := readStrings(t, filepath.Join(sharded, Shard{Index: i, Count: 2}.PartFile()), "parquet")
		for _, name := range stringNames {
			if len(got[name]) != len(rs) {
				t.Fatalf("shard %d: %d rows of %s, want %d", i, len(got[name]), name, len(rs))
			}
			for j, r := range rs {
				if got[name][j] != single[name][r] || nulls[name][j] != singleNulls[name][r] {
					t.Errorf("shard %d row %d (spine row %d) %s = %q, single run %q", i, j, r, name, got[name][j], single[name][r])
				}
			}
		}
	}
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: []string{"last_merchant", "merchants3"}}, points)
	if err != nil {
		t.Fatal(err)
	}
	if !v.IsString(0) || !v.IsString(1) || v.IsList(0) || !v.IsList(1) {
		t.Fatalf("Compute columns: IsString %v %v, IsList %v %v", v.IsString(0), v.IsString(1), v.IsList(0), v.IsList(1))
	}
	for i, r := range rows {
		s, ok := v.Str(i, 0)
		if w, wok := want("last_merchant", r.key, r.T); ok != wok || s != w {
			t.Errorf("Compute row %d last_merchant = %q (%v), want %q (%v)", i, s, ok, w, wok)
		}
		l, ok := v.StrList(i, 1)
		w, wok := want("merchants3", r.key, r.T)
		b, _ := json.Marshal(l)
		if ok != wok || (ok && string(b) != w) {
			t.Errorf("Compute row %d merchants3 = %s (%v), want %s (%v)", i, b, ok, w, wok)
		}
	}
}

// readStrings reads the columns stringNames of a string-feature output as
// text (a string as it is, a list as its JSON text, a number as
// formatFloat), and whether each cell is null; Parquet columns must be of
// the STRING logical type (lists of them) but amount_sum, a DOUBLE.
func readStrings(t *testing.T, path, format string) (cells map[string][]string, nulls map[string][]bool) {
	t.Helper()
	cells, nulls = map[string][]string{}, map[string][]bool{}
	if format == "csv" {
		tb := readTable(t, path)
		for _, name := range stringNames {
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
	cols := map[int]string{}
	isList := map[string]bool{}
	for _, name := range stringNames {
		leaf, ok := f.Schema().Lookup(name, "list", "element")
		isList[name] = ok
		if !ok {
			leaf, _ = f.Schema().Lookup(name)
		}
		str := false
		if leaf.Node != nil && leaf.Node.Type().Kind() == parquet.ByteArray && leaf.Node.Type().LogicalType() != nil {
			_, str = leaf.Node.Type().LogicalType().Value.(*pformat.StringType)
		}
		if (name == "amount_sum") == str || leaf.Node == nil {
			t.Fatalf("column %s: %v (string %v)", name, leaf.Node, str)
		}
		cols[leaf.ColumnIndex] = name
	}
	for _, row := range readParquetRows(t, f) {
		got := map[string][]string{}
		null := map[string]bool{}
		for _, v := range row {
			name, ok := cols[v.Column()]
			if !ok {
				continue
			}
			if v.IsNull() {
				null[name] = true
				continue
			}
			if name == "amount_sum" {
				got[name] = append(got[name], formatFloat(v.Double()))
			} else {
				got[name] = append(got[name], string(v.ByteArray()))
			}
		}
		for _, name := range stringNames {
			s := ""
			switch {
			case null[name]:
			case isList[name]:
				l := got[name]
				if l == nil {
					l = []string{}
				}
				b, err := json.Marshal(l)
				if err != nil {
					t.Fatal(err)
				}
				s = string(b)
			case len(got[name]) == 1:
				s = got[name][0]
			}
			cells[name] = append(cells[name], s)
			nulls[name] = append(nulls[name], null[name])
		}
	}
	return cells, nulls
}

// openParquet opens a Parquet file for the test's lifetime.
func openParquet(t *testing.T, path string) (*parquet.File, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { f.Close() })
	return parquet.OpenFile(f, mustSize(t, f))
}

// readParquetRows reads every row of f.
func readParquetRows(t *testing.T, f *parquet.File) []parquet.Row {
	t.Helper()
	r := parquet.NewReader(f)
	defer r.Close()
	var out []parquet.Row
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			out = append(out, row.Clone())
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
