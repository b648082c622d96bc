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
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

var listFile = testkit.KafkaSection(3) + `entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: transactions-{{ID}}
    schema: transaction.avsc
    event_time: ts
features:
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
// same lists (Values.List); sharded runs refuse them by name.
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
	for _, format := range []string{"csv", "parquet"} {
		spine, out := filepath.Join(dir, "spine-"+format+".csv"), filepath.Join(dir, "out."+format)
		writeSpine(t, spine, rows)
		m, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: out, Features: []string{"last3_7d", "half_sum_7d", "first4"}})
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
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
	// Sharded runs do not carry lists.
	spine := filepath.Join(dir, "spine-shard.csv")
	writeSpine(t, spine, rows)
	shard, _ := ParseShard("0/2")
	if _, err := Run(ctx, Options{Brokers: k.Brokers, Config: cfg, Spine: spine, Out: filepath.Join(dir, "sharded"), Shard: shard, Features: []string{"last3_7d"}}); err == nil || !strings.Contains(err.Error(), "a sharded backfill does not carry list values") {
		t.Errorf("sharded run of a list: %v", err)
	}
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
