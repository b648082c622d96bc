package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

var listFile = testkit.KafkaSection(3) + testkit.UserTransactions + `features:
  - {name: last3_7d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 7d, hop: 6h, owner: t, description: d}
  - {name: first4, version: 1, entity: user, source: transactions, aggregation: first_k, k: 4, field: amount, window: lifetime, owner: t, description: d}
  - {name: sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
  - {name: half_sum_7d, version: 1, entity: user, expression: "sum_7d / 2.0", owner: t, description: d}
`

// TestListFeaturesInCSVAndParquet: a backfill writes first_k and last_k
// columns as JSON text in CSV and as a Parquet LIST of doubles, equal at
// every spine row to aggtest.BruteForceList over the produced events (ties
// on event time included), empty (null) for an empty window or an unknown
// key, also next to a derived column; the manifest has no numeric
// statistics for them; the engine API (Compute: Feast Flight) answers the
// same lists (Values.List); a sharded run (2 shards) writes the same lists
// as the single run, row by row, with the same manifest statistics.
func TestListFeaturesInCSVAndParquet(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, listFile, testkit.SetupOptions{})
	ctx := context.Background()
	w := newWorld()
	now := time.Now().UnixMilli()
	h := aggregations.Hour
	var evs []genEvent
	add := func(key string, ts int64, amount float64) {
		evs = append(evs, genEvent{source: "transactions", key: key, ts: ts, arrival: ts, amount: amount})
	}
	for i := range 12 {
		add("many", now-int64(i*7%12)*10*h, float64(i)) // out of event-time order
	}
	add("many", now-5*h, 100) // ties on event time: offset order
	add("many", now-5*h, 101)
	add("few", now-3*h, 7)
	add("old", now-30*aggregations.Day, 9)
	produceAll(t, ctx, cl, cfg, evs, func(genEvent) bool { return true }, w)

	var rows []spineRow
	for _, key := range []string{"many", "few", "old", "nobody"} {
		for _, T := range []int64{now - 40*h, now - 5*h, now - 5*h + 1, now + 1} {
			rows = append(rows, spineRow{key: key, T: T})
		}
	}
	want := func(name, key string, T int64) []float64 {
		f, _ := cfg.Feature(name)
		var raw []aggregations.Event
		for _, s := range w.events["transactions"][key] {
			raw = append(raw, s.ev)
		}
		l, _ := aggtest.BruteForceList(f.Aggregation, f.Window, raw, T)
		return l
	}
	dir := t.TempDir()
	var singleMan *Manifest // the Parquet run's
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: []string{"last3_7d", "half_sum_7d", "first4"}})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		singleMan = m
		// The manifest's statistics of a list column are those of the
		// brute force's lists (lengths, elements, top elements), as the
		// worker computes them.
		for _, mf := range m.Features {
			if mf.Statistics == nil {
				t.Errorf("%s: no manifest statistics of %s", format, mf.Name)
				continue
			}
			if mf.Name == "half_sum_7d" {
				continue
			}
			ws := monitor.NewStats()
			for _, r := range rows {
				wl := want(mf.Name, r.key, r.T)
				ws.AddList(wl, wl != nil)
			}
			got, wantSum := mf.Statistics.Summary(), ws.Summary()
			if got.Kind != monitor.KindList || !reflect.DeepEqual(got, wantSum) {
				t.Errorf("%s: manifest statistics of %s:\n%+v\nwant\n%+v", format, mf.Name, got, wantSum)
			}
			if len(got.Top) == 0 || got.Length == nil || got.Length.Max == nil || *got.Length.Max == 0 {
				t.Errorf("%s: statistics of %s without top values or lengths: %+v", format, mf.Name, got)
			}
		}
		got := readLists(t, out, format, []string{"last3_7d", "first4"})
		full := 0
		for i, r := range rows {
			for _, name := range []string{"last3_7d", "first4"} {
				wl := want(name, r.key, r.T)
				if !slices.Equal(got[name][i], wl) || (got[name][i] == nil) != (wl == nil) {
					t.Errorf("%s row %d (%s, T=%d) %s = %v, want %v", format, i, r.key, r.T, name, got[name][i], wl)
				}
				if f, _ := cfg.Feature(name); len(wl) == f.K {
					full++
				}
			}
		}
		if full == 0 {
			t.Errorf("%s: no row reached k values", format)
		}
	}

	// Compute (Feast Flight) answers the same lists, next to a number.
	points := make([]Point, len(rows))
	for i, r := range rows {
		points[i] = Point{Key: r.key, T: r.T}
	}
	v, err := Compute(ctx, Options{Brokers: k.Brokers, Config: cfg, Features: []string{"sum_7d", "first4", "last3_7d"}}, points)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	if v.IsList(0) || !v.IsList(1) || !v.IsList(2) {
		t.Errorf("IsList of %v: %v %v %v", v.Columns, v.IsList(0), v.IsList(1), v.IsList(2))
	}
	if _, ok := v.List(0, 0); ok {
		t.Error("List of a number column answered")
	}
	full := 0
	for i, r := range rows {
		for c, name := range []string{"first4", "last3_7d"} {
			wl := want(name, r.key, r.T)
			got, ok := v.List(i, c+1)
			if !slices.Equal(got, wl) || ok != (wl != nil) {
				t.Errorf("Compute row %d (%s, T=%d) %s = %v (%v), want %v", i, r.key, r.T, name, got, ok, wl)
			}
			full += len(wl)
		}
	}
	if full == 0 {
		t.Error("Compute: every list was null")
	}
	// A sharded run writes the same lists: each shard's rows are the
	// single run's rows of its keys, element by element, and the dataset
	// manifest's statistics of a list column are the single run's.
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	names := []string{"last3_7d", "first4"}
	single := readLists(t, filepath.Join(dir, "out.parquet"), "parquet", names)
	sharded := filepath.Join(dir, "sharded")
	ds, owned := runShards(t, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Features: []string{"last3_7d", "half_sum_7d", "first4"}}, sharded, 2, 3, rows)
	seen := 0
	for i, rs := range owned {
		got := readLists(t, filepath.Join(sharded, Shard{Index: i, Count: 2}.PartFile()), "parquet", names)
		for _, name := range names {
			if len(got[name]) != len(rs) {
				t.Fatalf("shard %d: %d rows of %s, want %d", i, len(got[name]), name, len(rs))
			}
			for j, r := range rs {
				if !slices.Equal(got[name][j], single[name][r]) || (got[name][j] == nil) != (single[name][r] == nil) {
					t.Errorf("shard %d row %d (spine row %d) %s = %v, single run %v", i, j, r, name, got[name][j], single[name][r])
				}
				seen += len(got[name][j])
			}
		}
	}
	if seen == 0 {
		t.Error("sharded: every list was null")
	}
	for j, mf := range ds.Features {
		got, wantSum := mf.Statistics.Summary(), singleMan.Features[j].Statistics.Summary()
		if mf.Name != "half_sum_7d" && !sameSummary(got, wantSum) {
			t.Errorf("sharded: manifest statistics of %s:\n%+v\nsingle run\n%+v", mf.Name, got, wantSum)
		}
	}
}

// sameSummary tells whether statistics summaries a and b are equal: counts,
// top values and quantiles exactly, the moments within float rounding (a
// merge of shards sums in another order), lengths likewise.
func sameSummary(a, b monitor.Summary) bool {
	if (a.Length == nil) != (b.Length == nil) || (a.Length != nil && !sameSummary(*a.Length, *b.Length)) {
		return false
	}
	exact := func(s monitor.Summary) monitor.Summary {
		s.Length, s.Mean, s.Stddev, s.Min, s.Max = nil, nil, nil, nil, nil
		return s
	}
	return reflect.DeepEqual(exact(a), exact(b)) && near(a.Mean, b.Mean) && near(a.Stddev, b.Stddev) && near(a.Min, b.Min) && near(a.Max, b.Max)
}

// readLists reads the named list columns of an output: CSV cells as JSON
// text (empty: null), Parquet LIST columns (a null list: nil).
func readLists(t *testing.T, path, format string, names []string) map[string][][]float64 {
	t.Helper()
	out := map[string][][]float64{}
	if format == "csv" {
		tb := readTable(t, path)
		for _, name := range names {
			c := tb.col(t, name)
			for i, row := range tb.cells {
				var l []float64
				if !tb.null[i][c] {
					if err := json.Unmarshal([]byte(row[c]), &l); err != nil {
						t.Fatalf("%s row %d: %q: %v", name, i, row[c], err)
					}
				}
				out[name] = append(out[name], l)
			}
		}
		return out
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf, err := parquet.OpenFile(f, mustSize(t, f))
	if err != nil {
		t.Fatal(err)
	}
	cols := map[int]string{}
	for _, name := range names {
		leaf, ok := pf.Schema().Lookup(name, "list", "element")
		if !ok {
			t.Fatalf("no LIST column %s in %v", name, pf.Schema())
		}
		cols[leaf.ColumnIndex] = name
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			lists := map[string][]float64{}
			for _, v := range row {
				name, ok := cols[v.Column()]
				if !ok || v.IsNull() {
					continue
				}
				if v.DefinitionLevel() != 2 || (v.RepetitionLevel() == 0) != (lists[name] == nil) {
					t.Fatalf("%s: levels %d/%d", name, v.RepetitionLevel(), v.DefinitionLevel())
				}
				lists[name] = append(lists[name], v.Double())
			}
			for _, name := range names {
				out[name] = append(out[name], lists[name])
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

func mustSize(t *testing.T, f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
