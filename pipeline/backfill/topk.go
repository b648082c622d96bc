package backfill

import (
	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// TopValue is one entry of a top_k cell: a value of the feature's field
// (Value for a number field, typed by the column's output type; Str for a
// string field) and how often it occurs in the window.
type TopValue = aggregations.TopValue

// topOf is the value of a top_k feature over ir: its k most frequent
// values, most frequent first (aggregations.FinalizeTopValues).
func topOf(w aggregations.Window, ir aggregations.IR) ([]TopValue, bool) {
	return aggregations.FinalizeTopValues(w, ir)
}

// isTop reports whether column col holds top_k values.
func (r *results) isTop(col int) bool { return r.topCol != nil && r.topCol[col] }

// setTop sets a cell of a top_k column; e is its error
// (aggregations.TopKError).
func (r *results) setTop(row, col int, l []TopValue, e int64, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	if !ok {
		l, e = nil, 0
	}
	r.tops[i], r.topErrs[i], r.valid[i], r.status[i] = l, e, ok, st
}

// markTop marks column c as a top_k column, allocating the cells.
func (r *results) markTop(c int) {
	if r.topCol == nil {
		r.topCol = make([]bool, len(r.columns))
		r.tops = make([][]TopValue, len(r.values))
		r.topErrs = make([]int64, len(r.values))
	}
	r.topCol[c] = true
}

// Top returns the value of top_k column col (IsTop) for point row: at most
// k values with their counts, most frequent first (ties by value). ok=false
// means null.
func (v *Values) Top(row, col int) (top []TopValue, ok bool) {
	if !v.res.isTop(col) {
		return nil, false
	}
	i := row*len(v.res.columns) + col
	return v.res.tops[i], v.res.valid[i]
}

// TopError is the error of the top_k cell (row, col): the largest amount
// by which its counts may be below the true ones, 0 while exact (at most
// aggregations.TopKExactMax distinct values in the window) or null.
func (v *Values) TopError(row, col int) int64 {
	if !v.res.isTop(col) {
		return 0
	}
	return v.res.topErrs[row*len(v.res.columns)+col]
}

// IsTop reports whether column col is a top_k feature's, whose values Top
// returns (Get, List, Str and StrList give nothing for it).
func (v *Values) IsTop(col int) bool { return v.res.isTop(col) }

// TopJSON is the JSON text of a top_k cell of output type t, as the lookup
// API writes the value: [{"value":"atm","count":3},...].
func TopJSON(l []TopValue, t aggregations.ValueType) string {
	return string(jsonenc.AppendTopValues(nil, l, t))
}

// topStats adds column col's top_k values to s as the worker observes
// them: the list of the values, most frequent first, without the counts.
func (r *results) topStats(s *monitor.Stats, col int) {
	nf := len(r.columns)
	for i := col; i < len(r.values); i += nf {
		l := r.tops[i]
		if r.isString(col) {
			strs := make([]string, len(l))
			for j, e := range l {
				strs[j] = e.Str
			}
			s.AddStringList(strs, r.valid[i])
			continue
		}
		vals := make([]float64, len(l))
		for j, e := range l {
			vals[j] = e.Value
		}
		s.AddList(vals, r.valid[i])
	}
}

// parquetTopNode is the Parquet type of a top_k column: an optional LIST
// of required {value, count} groups, value typed by the column's output
// type (a STRING for a string field), count an INT64. It takes two leaf
// columns: value, then count.
func parquetTopNode(t aggregations.ValueType) parquet.Node {
	return parquet.Optional(parquet.List(parquet.Required(orderedGroup{
		namedNode{parquet.Required(parquetLeaf(t)), "value"},
		namedNode{parquet.Required(parquet.Leaf(parquet.Int64Type)), "count"},
	})))
}

// appendTopValues appends the Parquet values of a top_k cell whose leaf
// columns are leaf (value) and leaf+1 (count): null (definition level 0),
// an empty list (level 1), or each entry at level 2, repetition level 1
// after the first, the value column's before the count column's.
func appendTopValues(vals []parquet.Value, l []TopValue, valid bool, t aggregations.ValueType, leaf int) []parquet.Value {
	switch {
	case !valid:
		return append(vals, parquet.NullValue().Level(0, 0, leaf), parquet.NullValue().Level(0, 0, leaf+1))
	case len(l) == 0:
		return append(vals, parquet.NullValue().Level(0, 1, leaf), parquet.NullValue().Level(0, 1, leaf+1))
	}
	for e, x := range l {
		v := parquetValue(x.Value, t)
		if t == aggregations.TypeString {
			v = parquet.ByteArrayValue([]byte(x.Str))
		}
		vals = append(vals, v.Level(min(e, 1), 2, leaf))
	}
	for e, x := range l {
		vals = append(vals, parquet.Int64Value(x.Count).Level(min(e, 1), 2, leaf+1))
	}
	return vals
}
