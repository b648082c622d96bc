package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
)

// TestBackfillShardFlag: `backfill --shard i/N` run for every i writes one
// Parquet file per shard into the --out directory; the last one prints
// that it finished last and registers the dataset, whose one manifest
// counts every row. Bad --shard values, or a file name as --out, are usage
// errors (exit 2) naming the flag.
func TestBackfillShardFlag(t *testing.T) {
	f := newProduceFixture(t)
	events := f.input(t, "events.jsonl", txnLine("u-1", 10), txnLine("u-1", 30), txnLine("u-2", 5), txnLine("u-3", 7), txnLine("u-4", 1))
	if code, _, stderr := execCLI("produce", "--brokers", f.brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	spine := f.input(t, "spine.csv", "user_id,timestamp", "u-1,2023-11-15T00:00:00Z", "u-2,2023-11-15T00:00:00Z",
		"u-3,2023-11-15T00:00:00Z", "u-4,2023-11-15T00:00:00Z", "u-5,2023-11-15T00:00:00Z")
	out := filepath.Join(f.dir, "train")
	base := []string{"backfill", "--brokers", f.brokers, "--config", f.config, "--spine", spine, "--out", out, "--features", "txn_count_7d"}

	for _, tc := range []struct{ shard, msg string }{
		{"0/0", "the number of shards N must be at least 1"},
		{"3/2", "the shard index must be in 0..1"},
		{"x/y", "want i/N"},
	} {
		code, _, stderr := execCLI(append(base, "--shard", tc.shard)...)
		if code != 2 || !strings.Contains(stderr, "--shard") || !strings.Contains(stderr, tc.msg) {
			t.Errorf("--shard %s: exit %d, stderr:\n%s\nwant exit 2 naming --shard and saying %q", tc.shard, code, stderr, tc.msg)
		}
	}
	fileOut := append(slices.Clone(base), "--shard", "0/2")
	fileOut[slices.Index(fileOut, out)] = out + ".parquet"
	if code, _, stderr := execCLI(fileOut...); code != 2 || !strings.Contains(stderr, "a sharded backfill writes a directory") {
		t.Errorf("--shard with a file --out: exit %d, stderr:\n%s", code, stderr)
	}

	var last string
	for i, shard := range []string{"0/3", "1/3", "2/3"} {
		code, stdout, stderr := execCLI(append(base, "--shard", shard)...)
		if code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
		if i < 2 && !strings.Contains(stdout, "not every shard has finished") {
			t.Errorf("--shard %s printed:\n%s", shard, stdout)
		}
		last = stdout
	}
	if !strings.Contains(last, "shard 2/3 finished last: the dataset is 3 Parquet files in "+out) || !strings.Contains(last, "registered in the catalog as dataset train@1") {
		t.Errorf("the last shard printed:\n%s", last)
	}
	for i := 0; i < 3; i++ {
		if _, err := os.Stat(filepath.Join(out, backfill.Shard{Index: i, Count: 3}.PartFile())); err != nil {
			t.Error(err)
		}
	}
	m, err := backfill.ReadManifest(backfill.ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Output.Rows != 5 || len(m.Shards) != 3 || m.Dataset != "train@1" {
		t.Errorf("manifest: %d rows, %d shards, dataset %q; want 5, 3, train@1", m.Output.Rows, len(m.Shards), m.Dataset)
	}

	if code, _, stderr := execCLI(append(base, "--merge")...); code != 1 || !strings.Contains(stderr, "already has its manifest") {
		t.Errorf("--merge of a finished dataset: exit %d: %s", code, stderr)
	}

	// Recovery: the shard that claimed the merge died before writing the
	// manifest; --merge finishes the dataset once every shard is done.
	out2 := filepath.Join(f.dir, "train2")
	base2 := slices.Clone(base)
	base2[slices.Index(base2, out)] = out2
	for _, shard := range []string{"0/3", "2/3"} {
		if code, _, stderr := execCLI(append(base2, "--shard", shard)...); code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
	}
	if code, _, stderr := execCLI(append(base2, "--merge")...); code != 1 || !strings.Contains(stderr, "shards 1 of 3 have not finished") {
		t.Errorf("--merge with shard 1 missing: exit %d: %s", code, stderr)
	}
	if err := os.WriteFile(filepath.Join(out2, "_shards", "merge.claim"), []byte("shard 1/3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := execCLI(append(base2, "--shard", "1/3")...); code != 0 || !strings.Contains(stdout, "not every shard has finished") {
		t.Fatalf("--shard 1/3 with a claim left behind: exit %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr := execCLI(append(base2, "--merge")...)
	if code != 0 || !strings.Contains(stdout, "3 shards merged: 5 rows in "+out2) || !strings.Contains(stdout, "registered in the catalog as dataset train2@1") {
		t.Fatalf("--merge: exit %d: %s%s", code, stdout, stderr)
	}
	if code, _, stderr := execCLI(append(base2, "--merge", "--shard", "0/3")...); code != 2 || !strings.Contains(stderr, "without --shard") {
		t.Errorf("--merge --shard: exit %d: %s", code, stderr)
	}
}

// TestBackfillShardListFeatures: `backfill --shard i/2` of list features
// (demo's txn_first_times, a first_k of longs, and a last_k of doubles)
// writes Parquet LIST cells equal, key by key, to the single-process run's
// CSV JSON text, nulls included.
func TestBackfillShardListFeatures(t *testing.T) {
	f := newProduceFixture(t)
	f.catalog(t, "  - {name: txn_amount_last3, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: lifetime, owner: o, description: d}\n")
	var lines []string
	for i := range 24 {
		lines = append(lines, fmt.Sprintf(`{"user_id":"u-%d","merchant_id":"m1","amount":%v,"currency":"EUR","ts":%d}`, i%6, float64(i)*1.25+0.5, 1700000000000+int64(i*7%24)*60_000))
	}
	events := f.input(t, "events.jsonl", lines...)
	if code, _, stderr := execCLI("produce", "--brokers", f.brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	spineLines := []string{"user_id,timestamp"}
	for u := range 8 { // u-6 and u-7 have no events: null lists
		spineLines = append(spineLines, fmt.Sprintf("u-%d,2023-11-15T00:00:00Z", u))
	}
	spine := f.input(t, "spine.csv", spineLines...)
	names := []string{"txn_first_times", "txn_amount_last3"}
	base := []string{"backfill", "--brokers", f.brokers, "--config", f.config, "--spine", spine, "--features", strings.Join(names, ",")}

	single := filepath.Join(f.dir, "single.csv")
	if code, _, stderr := execCLI(append(base, "--out", single)...); code != 0 {
		t.Fatalf("single run: exit %d: %s", code, stderr)
	}
	want := map[string]map[string][]float64{} // feature -> key -> list (nil: null)
	fh, err := os.Open(single)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, name := range names {
		c := slices.Index(recs[0], name)
		if c < 0 {
			t.Fatalf("no column %s in %v", name, recs[0])
		}
		want[name] = map[string][]float64{}
		for _, r := range recs[1:] {
			var l []float64
			if r[c] != "" {
				if err := json.Unmarshal([]byte(r[c]), &l); err != nil {
					t.Fatalf("%s of %s: %q: %v", name, r[0], r[c], err)
				}
				lists++
			}
			want[name][r[0]] = l
		}
	}
	if lists != 12 {
		t.Fatalf("the single run has %d non-null lists, want 12 (6 keys x 2 features)", lists)
	}

	out := filepath.Join(f.dir, "train")
	for _, shard := range []string{"0/2", "1/2"} {
		if code, _, stderr := execCLI(append(base, "--out", out, "--shard", shard)...); code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
	}
	got := map[string]map[string][]float64{}
	for i := range 2 {
		for name, byKey := range readListParquet(t, filepath.Join(out, backfill.Shard{Index: i, Count: 2}.PartFile()), names) {
			if got[name] == nil {
				got[name] = map[string][]float64{}
			}
			for k, l := range byKey {
				if _, dup := got[name][k]; dup {
					t.Fatalf("key %s in two shards", k)
				}
				got[name][k] = l
			}
		}
	}
	for _, name := range names {
		if len(got[name]) != len(want[name]) {
			t.Fatalf("%s: the shards hold %d keys, the single run %d", name, len(got[name]), len(want[name]))
		}
		for k, w := range want[name] {
			if g := got[name][k]; !slices.Equal(g, w) || (g == nil) != (w == nil) {
				t.Errorf("%s of %s: shards %v, single run %v", name, k, g, w)
			}
		}
	}
}

// readListParquet reads the user_id column and the named LIST columns
// (INT64 or DOUBLE elements, as float64) of a backfill's Parquet file: per
// feature, per key, the list (nil: null).
func readListParquet(t *testing.T, path string, names []string) map[string]map[string][]float64 {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	key, ok := pf.Schema().Lookup("user_id")
	if !ok {
		t.Fatalf("no user_id column in %v", pf.Schema())
	}
	cols := map[int]string{}
	out := map[string]map[string][]float64{}
	for _, name := range names {
		leaf, ok := pf.Schema().Lookup(name, "list", "element")
		if !ok {
			t.Fatalf("no LIST column %s in %v", name, pf.Schema())
		}
		cols[leaf.ColumnIndex] = name
		out[name] = map[string][]float64{}
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			k := ""
			lists := map[string][]float64{}
			for _, v := range row {
				if v.Column() == key.ColumnIndex {
					k = v.String()
					continue
				}
				name, ok := cols[v.Column()]
				if !ok || v.IsNull() {
					continue
				}
				x := v.Double()
				if v.Kind() == parquet.Int64 {
					x = float64(v.Int64())
				}
				lists[name] = append(lists[name], x)
			}
			for _, name := range names {
				out[name][k] = lists[name]
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

// TestBackfillShardStringFeatures: `backfill --shard i/2` of the demo's
// string features (txn_last_merchant, a last of merchant_id, and
// txn_recent_merchants, a last_k of it) writes Parquet STRING and LIST of
// STRING cells equal, key by key, to the single-process run's CSV (the
// string, the list's JSON text, nulls included).
func TestBackfillShardStringFeatures(t *testing.T) {
	f := newProduceFixture(t)
	f.catalog(t, "")
	var lines []string
	merchants := []string{"m-1", "café", `m,"2"`, "m-3"}
	for i := range 30 {
		lines = append(lines, fmt.Sprintf(`{"user_id":"u-%d","merchant_id":%q,"amount":1.5,"currency":"EUR","ts":%d}`,
			i%6, merchants[i*5%len(merchants)], 1700000000000+int64(i*7%30)*60_000))
	}
	events := f.input(t, "events.jsonl", lines...)
	if code, _, stderr := execCLI("produce", "--brokers", f.brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	spineLines := []string{"user_id,timestamp"}
	for u := range 8 { // u-6 and u-7 have no events: nulls
		spineLines = append(spineLines, fmt.Sprintf("u-%d,2023-11-15T00:00:00Z", u))
	}
	spine := f.input(t, "spine.csv", spineLines...)
	names := []string{"txn_last_merchant", "txn_recent_merchants"}
	base := []string{"backfill", "--brokers", f.brokers, "--config", f.config, "--spine", spine, "--features", strings.Join(names, ",")}
	single := filepath.Join(f.dir, "single.csv")
	if code, _, stderr := execCLI(append(base, "--out", single)...); code != 0 {
		t.Fatalf("single run: exit %d: %s", code, stderr)
	}
	fh, err := os.Open(single)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{} // feature -> key -> CSV cell
	values := 0
	for _, name := range names {
		c := slices.Index(recs[0], name)
		if c < 0 {
			t.Fatalf("no column %s in %v", name, recs[0])
		}
		want[name] = map[string]string{}
		for _, r := range recs[1:] {
			want[name][r[0]] = r[c]
			if r[c] != "" {
				values++
			}
		}
	}
	if values != 12 {
		t.Fatalf("the single run has %d non-null values, want 12 (6 keys x 2 features)", values)
	}
	out := filepath.Join(f.dir, "train")
	for _, shard := range []string{"0/2", "1/2"} {
		if code, _, stderr := execCLI(append(base, "--out", out, "--shard", shard)...); code != 0 {
			t.Fatalf("--shard %s: exit %d: %s", shard, code, stderr)
		}
	}
	got := map[string]map[string]string{}
	for i := range 2 {
		for name, byKey := range readStringParquet(t, filepath.Join(out, backfill.Shard{Index: i, Count: 2}.PartFile()), names) {
			if got[name] == nil {
				got[name] = map[string]string{}
			}
			for k, v := range byKey {
				if _, dup := got[name][k]; dup {
					t.Fatalf("key %s in two shards", k)
				}
				got[name][k] = v
			}
		}
	}
	for _, name := range names {
		if len(got[name]) != len(want[name]) {
			t.Fatalf("%s: the shards hold %d keys, the single run %d", name, len(got[name]), len(want[name]))
		}
		for k, w := range want[name] {
			if g := got[name][k]; g != w {
				t.Errorf("%s of %s: shards %s, single run %s", name, k, g, w)
			}
		}
	}
}

// readStringParquet reads the user_id column and the named string columns
// (STRING, or LIST of STRING) of a backfill's Parquet file: per feature,
// per key, the cell as the CSV output writes it (the string, a list's JSON
// text, "" for null).
func readStringParquet(t *testing.T, path string, names []string) map[string]map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	key, ok := pf.Schema().Lookup("user_id")
	if !ok {
		t.Fatalf("no user_id column in %v", pf.Schema())
	}
	cols, list := map[int]string{}, map[string]bool{}
	out := map[string]map[string]string{}
	for _, name := range names {
		leaf, ok := pf.Schema().Lookup(name, "list", "element")
		list[name] = ok
		if !ok {
			leaf, _ = pf.Schema().Lookup(name)
		}
		if leaf.Node == nil || leaf.Node.Type().Kind() != parquet.ByteArray {
			t.Fatalf("column %s: %v, want strings", name, leaf.Node)
		}
		cols[leaf.ColumnIndex] = name
		out[name] = map[string]string{}
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			k := ""
			vals, null := map[string][]string{}, map[string]bool{}
			for _, v := range row {
				switch name, ok := cols[v.Column()]; {
				case v.Column() == key.ColumnIndex:
					k = string(v.ByteArray())
				case ok && v.IsNull():
					null[name] = true
				case ok:
					vals[name] = append(vals[name], string(v.ByteArray()))
				}
			}
			for _, name := range names {
				cell := ""
				switch {
				case null[name]:
				case list[name]:
					b, _ := json.Marshal(vals[name])
					cell = string(b)
				default:
					cell = vals[name][0]
				}
				out[name][k] = cell
			}
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
