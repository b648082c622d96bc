package backfill

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// results are the feature values of the good spine rows: row i (an index
// into spine.good), feature column j is values[i*len(columns)+j], null when
// valid is false.
type results struct {
	columns []string
	values  []float64
	valid   []bool
	status  []cellStatus // per cell, like values
	// listCol marks the columns of list features (first_k, last_k), whose
	// cells are in lists (values holds 0); both nil when there are none.
	listCol []bool
	lists   [][]float64
}

// markLists marks the columns of cols (in r's column order) whose feature
// is a list, allocating their cells.
func (r *results) markLists(cols []column) {
	for c, col := range cols {
		if col.feature.Aggregation.List() {
			if r.listCol == nil {
				r.listCol = make([]bool, len(r.columns))
				r.lists = make([][]float64, len(r.values))
			}
			r.listCol[c] = true
		}
	}
}

// isList reports whether column col holds lists.
func (r *results) isList(col int) bool { return r.listCol != nil && r.listCol[col] }

// setList sets a cell of a list column (see markLists).
func (r *results) setList(row, col int, l []float64, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	r.lists[i], r.valid[i], r.status[i] = l, ok, st
}

func newResults(columns []string, rows int) *results {
	n := rows * len(columns)
	return &results{columns: columns, values: make([]float64, n), valid: make([]bool, n), status: make([]cellStatus, n)}
}

// columnStats returns the statistics of column col's values (nulls
// included): the training baseline the manifest records. Cost: one pass
// over the rows.
func (r *results) columnStats(col int) *monitor.Stats {
	s := monitor.NewStats()
	nf := len(r.columns)
	for i := col; i < len(r.values); i += nf {
		if r.valid[i] {
			s.AddValue(r.values[i])
		} else {
			s.AddNull()
		}
	}
	return s
}

func (r *results) set(row, col int, v float64, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	r.values[i], r.valid[i], r.status[i] = v, ok, st
}

// writeAtomically writes path through a temporary file in the same directory
// and renames it into place, so a failed run never leaves a partial file.
func writeAtomically(path string, write func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeOutput writes every good spine row in file order with its feature
// columns appended.
func writeOutput(path string, format Format, sp *spine, res *results) error {
	return writeAtomically(path, func(f *os.File) error {
		if format == FormatCSV {
			return writeCSV(f, sp, res)
		}
		return writeParquet(f, sp, res)
	})
}

func writeCSV(f *os.File, sp *spine, res *results) error {
	bw := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(bw)
	nf := len(res.columns)
	rec := make([]string, 0, len(sp.columns)+nf)
	rec = append(append(rec, sp.columns...), res.columns...)
	if err := w.Write(rec); err != nil {
		return err
	}
	for i, src := range sp.good {
		rec = rec[:0]
		if sp.format == FormatCSV {
			rec = append(rec, sp.records[src]...)
		} else {
			for _, v := range sp.prows[src] {
				rec = append(rec, cellString(v))
			}
		}
		for j := 0; j < nf; j++ {
			cell := ""
			switch {
			case !res.valid[i*nf+j]:
			case res.isList(j): // a list: its JSON text
				b, err := json.Marshal(res.lists[i*nf+j])
				if err != nil {
					return err
				}
				cell = string(b)
			default:
				cell = formatFloat(res.values[i*nf+j])
			}
			rec = append(rec, cell)
		}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeParquet keeps the columns of a Parquet spine with their types; the
// columns of a CSV spine become strings. Feature columns are optional doubles;
// those of list features (first_k, last_k) optional LISTs of doubles (CSV
// writes a list as its JSON text, e.g. [12.5,3]).
func writeParquet(f *os.File, sp *spine, res *results) error {
	var fields []parquet.Field
	if sp.format == FormatParquet {
		fields = append(fields, sp.pschema.Fields()...)
	} else {
		for _, c := range sp.columns {
			fields = append(fields, namedNode{parquet.String(), c})
		}
	}
	base := len(fields)
	for j, c := range res.columns {
		if res.isList(j) { // an optional LIST of required doubles
			fields = append(fields, namedNode{parquet.Optional(parquet.List(parquet.Required(parquet.Leaf(parquet.DoubleType)))), c})
			continue
		}
		fields = append(fields, namedNode{parquet.Optional(parquet.Leaf(parquet.DoubleType)), c})
	}
	schema := parquet.NewSchema("backfill", orderedGroup(fields))
	w := parquet.NewWriter(f, schema, parquet.Compression(&parquet.Zstd))
	// Row groups of rowGroupRows rows are encoded and compressed at once,
	// GOMAXPROCS at a time, then written in order: the file is the same
	// whatever the number of cores.
	n := len(sp.good)
	groups := (n + rowGroupRows - 1) / rowGroupRows
	rgs := make([]*parquet.ConcurrentRowGroupWriter, groups)
	errs := make([]error, groups)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), groups) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := int(next.Add(1) - 1); g < groups; g = int(next.Add(1) - 1) {
				rgs[g] = w.BeginRowGroup()
				errs[g] = fillRowGroup(rgs[g], sp, res, base, g*rowGroupRows, min(n, (g+1)*rowGroupRows))
			}
		}()
	}
	wg.Wait()
	for g, rg := range rgs {
		if errs[g] != nil {
			return errs[g]
		}
		if _, err := rg.Commit(); err != nil {
			return err
		}
	}
	return w.Close()
}

// rowGroupRows is the number of rows in a row group of the output (the last
// one may have fewer).
const rowGroupRows = 1 << 17

// fillRowGroup writes good rows [from, to) to rg and flushes it; base is the
// number of spine columns.
func fillRowGroup(rg *parquet.ConcurrentRowGroupWriter, sp *spine, res *results, base, from, to int) error {
	nf := len(res.columns)
	const batch = 1024
	rows := make([]parquet.Row, 0, batch)
	var vals []parquet.Value // every row of the batch, reused: WriteRows copies
	flush := func() error {
		if _, err := rg.WriteRows(rows); err != nil {
			return err
		}
		rows, vals = rows[:0], vals[:0]
		return nil
	}
	for i := from; i < to; i++ {
		src := sp.good[i]
		start := len(vals)
		if sp.format == FormatParquet {
			vals = append(vals, sp.prows[src]...)
		} else {
			for c, cell := range sp.records[src] {
				vals = append(vals, parquet.ByteArrayValue([]byte(cell)).Level(0, 0, c))
			}
		}
		for j := 0; j < nf; j++ {
			if res.isList(j) && res.valid[i*nf+j] {
				// Definition level 2 (the optional list and its repeated
				// group are present); repetition level 1 after the first.
				for e, x := range res.lists[i*nf+j] {
					vals = append(vals, parquet.DoubleValue(x).Level(min(e, 1), 2, base+j))
				}
				continue
			}
			v := parquet.NullValue().Level(0, 0, base+j)
			if res.valid[i*nf+j] {
				v = parquet.DoubleValue(res.values[i*nf+j]).Level(0, 1, base+j)
			}
			vals = append(vals, v)
		}
		rows = append(rows, parquet.Row(vals[start:len(vals):len(vals)]))
		if len(rows) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return rg.Flush()
}

// orderedGroup is a Parquet group that keeps its fields in the given order
// (parquet.Group sorts them by name, which would reorder the spine's columns).
type orderedGroup []parquet.Field

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return parquet.Group{}.String() }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Fields() []parquet.Field     { return g }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }
func (g orderedGroup) GoType() reflect.Type        { return reflect.TypeOf(map[string]any(nil)) }

// namedNode names a node as a field of an orderedGroup.
type namedNode struct {
	parquet.Node
	name string
}

func (n namedNode) Name() string { return n.name }

func (n namedNode) Value(base reflect.Value) reflect.Value {
	if base.Kind() == reflect.Map {
		return base.MapIndex(reflect.ValueOf(n.name))
	}
	return reflect.Value{}
}
