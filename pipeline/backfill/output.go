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
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/featurepipe/featurepipe/aggregations"
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
	// types are the output types of the columns (config.Feature.OutputType:
	// a last of a long field is written as a long, a first_k of a boolean
	// field as booleans); nil: every column a double.
	types []aggregations.ValueType
	// strs and strLists hold the cells of string columns (typeOf
	// TypeString: last and first, and first_k and last_k, of a string
	// field), like values and lists (values holds 0, lists nil there);
	// each nil when there is no such column.
	strs     []string
	strLists [][]string
	// topCol marks the columns of top_k features, whose cells are in tops
	// (values holds 0; see topk.go); both nil when there are none.
	topCol  []bool
	tops    [][]TopValue
	topErrs []int64 // per cell: aggregations.TopKError
	// bucketCol marks the columns of bucketed features with their shape
	// (NotBuckets for the others), whose cells are in bkts (maps, see
	// BucketCell; values holds 0); both nil when there are none. A
	// bucketed column is neither a list, a top_k nor a string column.
	bucketCol []BucketShape
	bkts      [][]BucketCell
}

// isString reports whether column col holds strings (lists of strings,
// if isList).
func (r *results) isString(col int) bool {
	return r.typeOf(col) == aggregations.TypeString && !r.isBucket(col)
}

// setStr sets a cell of a string column that is not a list.
func (r *results) setStr(row, col int, s string, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	if !ok {
		s = ""
	}
	r.strs[i], r.valid[i], r.status[i] = s, ok, st
}

// setStrList sets a cell of a string list column.
func (r *results) setStrList(row, col int, l []string, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	if !ok {
		l = nil
	}
	r.strLists[i], r.valid[i], r.status[i] = l, ok, st
}

// copyCell sets cell (row, col) of r to cell i of src, a results of the
// same column kinds (derived features copying their base columns).
func (r *results) copyCell(row, col int, src *results, i, srcCol int) {
	switch {
	case src.isTop(srcCol):
		r.setTop(row, col, src.tops[i], src.topErrs[i], src.valid[i], src.status[i])
	case src.isBucket(srcCol):
		r.setBuckets(row, col, src.bkts[i], src.valid[i], src.status[i])
	case src.isString(srcCol) && src.isList(srcCol):
		r.setStrList(row, col, src.strLists[i], src.valid[i], src.status[i])
	case src.isString(srcCol):
		r.setStr(row, col, src.strs[i], src.valid[i], src.status[i])
	case src.isList(srcCol):
		r.setList(row, col, src.lists[i], src.valid[i], src.status[i])
	default:
		r.set(row, col, src.values[i], src.valid[i], src.status[i])
	}
}

// typeOf is the output type of column col (of each element, for a list).
func (r *results) typeOf(col int) aggregations.ValueType {
	if r.types == nil {
		return aggregations.TypeDouble
	}
	return r.types[col]
}

// markLists marks the columns of cols (in r's column order) whose feature
// is a list, allocating their cells, notes every column's output type, and
// allocates the string cells (strs, strLists) when a column holds strings.
func (r *results) markLists(cols []column) {
	r.markBuckets(cols)
	for c, col := range cols {
		if t := col.feature.OutputType(); t != aggregations.TypeDouble {
			if r.types == nil {
				r.types = make([]aggregations.ValueType, len(r.columns))
			}
			r.types[c] = t
		}
		if col.feature.Bucket != "" {
			continue // a map (markBuckets), of values of type t
		}
		if col.feature.Aggregation == aggregations.TopK {
			r.markTop(c)
			continue
		}
		if col.feature.OutputType() == aggregations.TypeString {
			switch {
			case col.feature.Aggregation.List() && r.strLists == nil:
				r.strLists = make([][]string, len(r.values))
			case !col.feature.Aggregation.List() && r.strs == nil:
				r.strs = make([]string, len(r.values))
			}
		}
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
// included; a list column's lists, monitor.Stats.AddList, as the worker
// observes them): the training baseline the manifest records. Cost: one
// pass over the rows.
func (r *results) columnStats(col int) *monitor.Stats {
	s := monitor.NewStats()
	nf := len(r.columns)
	switch {
	case r.isTop(col):
		r.topStats(s, col)
	case r.isBucket(col):
		for i := col; i < len(r.values); i += nf {
			bucketStats(s, r.bkts[i], r.valid[i], r.typeOf(col), r.bucketShape(col))
		}
		return s
	case r.isString(col) && r.isList(col):
		for i := col; i < len(r.values); i += nf {
			s.AddStringList(r.strLists[i], r.valid[i])
		}
		return s
	case r.isString(col):
		for i := col; i < len(r.values); i += nf {
			s.AddString(r.strs[i], r.valid[i])
		}
		return s
	}
	if r.isList(col) {
		for i := col; i < len(r.values); i += nf {
			s.AddList(r.lists[i], r.valid[i])
		}
		return s
	}
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
			case res.isTop(j): // top_k: its JSON text, as the lookup API writes it
				cell = TopJSON(res.tops[i*nf+j], res.typeOf(j))
			case res.isBucket(j): // a map: its JSON text
				cell = bucketsJSON(res.bkts[i*nf+j], res.typeOf(j), res.bucketShape(j))
			case res.isString(j) && res.isList(j): // a list of strings: its JSON text
				b, err := json.Marshal(res.strLists[i*nf+j])
				if err != nil {
					return err
				}
				cell = string(b)
			case res.isString(j): // the string as it is
				cell = res.strs[i*nf+j]
			case res.isList(j): // a list: its JSON text
				b, err := listJSON(res.lists[i*nf+j], res.typeOf(j))
				if err != nil {
					return err
				}
				cell = string(b)
			default:
				cell = formatValue(res.values[i*nf+j], res.typeOf(j))
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
// columns of a CSV spine become strings. Feature columns are optional doubles,
// INT64, BOOLEAN or STRING (BYTE_ARRAY, UTF8) by the feature's output type (a
// last of a long field is an INT64, of a string field a STRING); those of
// list features (first_k, last_k) optional LISTs of those, those of
// bucketed features optional MAPs from a STRING bucket key to an optional
// value of that type, or of a LIST of it (bucketed first_k, last_k), or of
// a top_k's LIST of {value, count} (CSV writes a string as it is and a
// list or a map as its JSON text, e.g. [12.5,3], [true,false],
// ["m1","m2"], {"EUR":12.5,"__other__":3}, {"EUR":[3.5,1]} or
// {"EUR":[{"value":"m-1","count":3}]}).
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
		if res.isTop(j) { // a LIST of {value, count}: two leaf columns
			fields = append(fields, namedNode{parquetTopNode(res.typeOf(j)), c})
			continue
		}
		leaf := parquetLeaf(res.typeOf(j))
		if res.isBucket(j) { // an optional MAP: two or three leaf columns (key, value[, count])
			fields = append(fields, namedNode{parquetBucketNode(res.typeOf(j), res.bucketShape(j)), c})
			continue
		}
		if res.isList(j) { // an optional LIST of required elements
			fields = append(fields, namedNode{parquet.Optional(parquet.List(parquet.Required(leaf))), c})
			continue
		}
		fields = append(fields, namedNode{parquet.Optional(leaf), c})
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
	// leaves[j] is the first leaf column of feature column j: a top_k
	// column takes two (value, count), a map two (key, value) or, of top_k
	// lists, three (key, value, count).
	leaves := make([]int, nf)
	for j, next := 0, base; j < nf; j++ {
		leaves[j] = next
		switch {
		case res.isBucket(j):
			next += bucketLeaves(res.bucketShape(j))
		case res.isTop(j):
			next += 2
		default:
			next++
		}
	}
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
			if res.isTop(j) {
				vals = appendTopValues(vals, res.tops[i*nf+j], res.valid[i*nf+j], res.typeOf(j), leaves[j])
				continue
			}
			if res.isBucket(j) {
				vals = appendBucketValues(vals, res.bkts[i*nf+j], res.valid[i*nf+j], res.typeOf(j), res.bucketShape(j), leaves[j])
				continue
			}
			if res.isString(j) && res.valid[i*nf+j] {
				if res.isList(j) { // levels as for the lists of numbers below
					for e, x := range res.strLists[i*nf+j] {
						vals = append(vals, parquet.ByteArrayValue([]byte(x)).Level(min(e, 1), 2, leaves[j]))
					}
					continue
				}
				vals = append(vals, parquet.ByteArrayValue([]byte(res.strs[i*nf+j])).Level(0, 1, leaves[j]))
				continue
			}
			if res.isList(j) && res.valid[i*nf+j] {
				// Definition level 2 (the optional list and its repeated
				// group are present); repetition level 1 after the first.
				t := res.typeOf(j)
				for e, x := range res.lists[i*nf+j] {
					vals = append(vals, parquetValue(x, t).Level(min(e, 1), 2, leaves[j]))
				}
				continue
			}
			v := parquet.NullValue().Level(0, 0, leaves[j])
			if res.valid[i*nf+j] {
				v = parquetValue(res.values[i*nf+j], res.typeOf(j)).Level(0, 1, leaves[j])
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

// parquetLeaf is the Parquet type of a value of output type t.
func parquetLeaf(t aggregations.ValueType) parquet.Node {
	switch t {
	case aggregations.TypeLong:
		return parquet.Leaf(parquet.Int64Type)
	case aggregations.TypeBool:
		return parquet.Leaf(parquet.BooleanType)
	case aggregations.TypeString: // BYTE_ARRAY, UTF8 (STRING) logical type
		return parquet.String()
	}
	return parquet.Leaf(parquet.DoubleType)
}

// parquetValue is x, a value of output type t, as parquetLeaf(t) holds it:
// a long is exact (the decoder keeps only longs up to 2^53 for these
// features), a boolean is x != 0.
func parquetValue(x float64, t aggregations.ValueType) parquet.Value {
	switch t {
	case aggregations.TypeLong:
		return parquet.Int64Value(int64(x))
	case aggregations.TypeBool:
		return parquet.BooleanValue(x != 0)
	}
	return parquet.DoubleValue(x)
}

// formatValue is a CSV cell of x, a value of output type t: a long in base
// 10 (never an exponent), true or false, or a double as formatFloat writes it.
func formatValue(x float64, t aggregations.ValueType) string {
	switch t {
	case aggregations.TypeLong:
		return strconv.FormatInt(int64(x), 10)
	case aggregations.TypeBool:
		return strconv.FormatBool(x != 0)
	}
	return formatFloat(x)
}

// listJSON is the JSON text of a list of values of output type t: numbers
// (a long list's are whole numbers, exact up to 2^53) or booleans.
func listJSON(l []float64, t aggregations.ValueType) ([]byte, error) {
	if t == aggregations.TypeBool {
		bs := make([]bool, len(l))
		for i, x := range l {
			bs[i] = x != 0
		}
		return json.Marshal(bs)
	}
	return json.Marshal(l)
}
