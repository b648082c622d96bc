package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
)

// checkShardedEqual runs o as n shards at once into a new directory of
// dir and checks that the union of their Parquet files' rows is exactly
// the rows of want, the CSV output of the same backfill run in one process
// (spine columns as text, feature cells formatted as the CSV writer does).
func checkShardedEqual(t *testing.T, ctx context.Context, o backfill.Options, dir, want string, n int) {
	t.Helper()
	out := filepath.Join(dir, fmt.Sprintf("sharded-%d", n))
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			so := o
			so.Out, so.Shard = out, backfill.Shard{Index: i, Count: n}
			_, errs[i] = backfill.Run(ctx, so)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("sharded backfill: %v", err)
	}
	single := readCSV(t, want)
	var got []string
	for i := 0; i < n; i++ {
		header, rows := readParquetText(t, filepath.Join(out, backfill.Shard{Index: i, Count: n}.PartFile()))
		if !slices.Equal(header, single[0]) {
			t.Fatalf("shard %d columns %v, single run %v", i, header, single[0])
		}
		got = append(got, rows...)
	}
	var wantRows []string
	for _, r := range single[1:] {
		wantRows = append(wantRows, strings.Join(r, ","))
	}
	slices.Sort(got)
	slices.Sort(wantRows)
	if !slices.Equal(got, wantRows) {
		t.Fatalf("the %d shards' rows differ from the single run's (%d vs %d rows)", n, len(got), len(wantRows))
	}
	if _, err := os.Stat(backfill.ManifestPath(out)); err != nil {
		t.Fatalf("no dataset manifest: %v", err)
	}
}

// readParquetText reads a backfill's Parquet output of a CSV spine: its
// column names and each row as CSV-like text (null: "").
func readParquetText(t *testing.T, path string) ([]string, []string) {
	t.Helper()
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
	var header []string
	for _, fl := range pf.Schema().Fields() {
		header = append(header, fl.Name())
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []string
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			cells := make([]string, len(row))
			for i, v := range row {
				switch {
				case v.IsNull():
				case v.Kind() == parquet.Double:
					cells[i] = strconv.FormatFloat(v.Double(), 'g', -1, 64)
				default:
					cells[i] = string(v.ByteArray())
				}
			}
			out = append(out, strings.Join(cells, ","))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return header, out
}
