package backfill

import (
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/jsonenc"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// BucketCell is one bucket of a bucketed feature's value (config.Feature.
// Bucket) in a backfill row: the bucket key and the aggregation over that
// bucket's events, as the lookup service serves it. Which field holds the
// value depends on the column's shape (BucketShape) and output type.
type BucketCell struct {
	Key string
	// Value is the bucket's value for a scalar column whose output type is
	// not TypeString (a long and a boolean as the float64 the IR holds, as
	// Values.Get gives them).
	Value float64
	// Str is the bucket's value for a scalar column of output type
	// TypeString.
	Str string
	// List is the bucket's list for a first_k or last_k column of a number
	// field (ordered as the aggregation defines, last_k newest first),
	// Strs for one of a string field.
	List []float64
	Strs []string
	// Top is the bucket's value for a top_k column: at most k values with
	// their counts, most frequent first (aggregations.FinalizeTopValues);
	// TopErr its error (aggregations.TopKError: 0 while the bucket has at
	// most aggregations.TopKExactMax distinct values in the window).
	Top    []TopValue
	TopErr int64
	// OK is false when the bucket's value is null (a variance_samp or
	// stddev_samp of one event).
	OK bool
}

// BucketShape is what one bucket's value of a bucketed column is.
type BucketShape uint8

const (
	// NotBuckets: the column is not a bucketed feature's.
	NotBuckets BucketShape = iota
	// BucketScalars: a number or a string per bucket (BucketCell.Value,
	// BucketCell.Str).
	BucketScalars
	// BucketLists: a list per bucket, first_k and last_k (BucketCell.List,
	// BucketCell.Strs).
	BucketLists
	// BucketTops: a top_k list of {value, count} per bucket
	// (BucketCell.Top).
	BucketTops
)

// bucketShapeOf is the shape of a bucketed feature of kind k.
func bucketShapeOf(k aggregations.Kind) BucketShape {
	switch {
	case k == aggregations.TopK:
		return BucketTops
	case k.List():
		return BucketLists
	}
	return BucketScalars
}

// bucketCells finalizes the IR of a bucketed column as the lookup service
// does (aggregations.FinalizeBuckets, then the kind per bucket: Finalize,
// FinalizeString, FinalizeList, FinalizeStringList or FinalizeTopValues):
// the map's cells by increasing key; ok is false for null (an empty window
// of a kind whose empty value is null); an empty window of count, sum or
// approx_distinct is an empty map.
func bucketCells(col *column, ir aggregations.IR) (cells []BucketCell, ok bool) {
	bs := aggregations.FinalizeBuckets(ir, col.feature.MaxBuckets)
	if len(bs) == 0 {
		if col.feature.Aggregation.EmptyIsZero() {
			return []BucketCell{}, true
		}
		return nil, false
	}
	cells = make([]BucketCell, len(bs))
	str := col.feature.OutputType() == aggregations.TypeString
	k := col.plan.Kind
	for i, b := range bs {
		c := &cells[i]
		c.Key = b.Key
		switch {
		case k == aggregations.TopK:
			c.Top, c.OK = aggregations.FinalizeTopValues(col.plan.Window, b.IR)
			c.TopErr = aggregations.TopKError(b.IR)
		case k.List() && str:
			c.Strs, c.OK = aggregations.FinalizeStringList(k, b.IR)
		case k.List():
			c.List, c.OK = aggregations.FinalizeList(k, b.IR)
		case str:
			c.Str, c.OK = aggregations.FinalizeString(k, b.IR)
		default:
			c.Value, c.OK = aggregations.Finalize(k, b.IR)
		}
	}
	return cells, true
}

// isBucket reports whether column col holds maps (a bucketed feature's).
func (r *results) isBucket(col int) bool { return r.bucketShape(col) != NotBuckets }

// bucketShape is what the buckets of column col hold (NotBuckets for a
// column that is not a bucketed feature's).
func (r *results) bucketShape(col int) BucketShape {
	if r.bucketCol == nil {
		return NotBuckets
	}
	return r.bucketCol[col]
}

// setBuckets sets a cell of a bucketed column.
func (r *results) setBuckets(row, col int, cells []BucketCell, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	if !ok {
		cells = nil
	}
	r.bkts[i], r.valid[i], r.status[i] = cells, ok, st
}

// markBuckets marks the columns of cols whose feature is bucketed with
// their shape, allocating their cells.
func (r *results) markBuckets(cols []column) {
	for c, col := range cols {
		if col.feature.Bucket == "" {
			continue
		}
		if r.bucketCol == nil {
			r.bucketCol = make([]BucketShape, len(r.columns))
			r.bkts = make([][]BucketCell, len(r.values))
		}
		r.bucketCol[c] = bucketShapeOf(col.feature.Aggregation)
	}
}

// bucketStats adds a map to s as the worker's published-value statistics
// do: the list of its buckets' values (numbers; the strings of a string
// feature), so that the null rate counts null maps and the lengths are the
// numbers of buckets; for a map of lists (BucketLists, BucketTops), the
// buckets' lists one after the other by increasing key (a top_k's values
// without their counts), so the lengths are the numbers of elements.
// Per-bucket statistics are not kept (a bucket key is data: a column per
// key would not be bounded).
func bucketStats(s *monitor.Stats, cells []BucketCell, ok bool, t aggregations.ValueType, shape BucketShape) {
	if t == aggregations.TypeString {
		var l []string
		for _, c := range cells {
			switch {
			case !c.OK:
			case shape == BucketTops:
				for _, x := range c.Top {
					l = append(l, x.Str)
				}
			case shape == BucketLists:
				l = append(l, c.Strs...)
			default:
				l = append(l, c.Str)
			}
		}
		s.AddStringList(l, ok)
		return
	}
	var l []float64
	for _, c := range cells {
		switch {
		case !c.OK:
		case shape == BucketTops:
			for _, x := range c.Top {
				l = append(l, x.Value)
			}
		case shape == BucketLists:
			l = append(l, c.List...)
		default:
			l = append(l, c.Value)
		}
	}
	s.AddList(l, ok)
}

// bucketsJSON is the JSON text of a map (a CSV cell): an object from bucket
// key to value, keys in increasing order, each value as the lookup service
// writes it (a number, a whole long, true or false, a string, null; a list
// of those for BucketLists, [{"value":v,"count":n},...] for BucketTops).
func bucketsJSON(cells []BucketCell, t aggregations.ValueType, shape BucketShape) string {
	buf := make([]byte, 0, 16+24*len(cells))
	buf = append(buf, '{')
	for i, c := range cells {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = jsonenc.AppendString(buf, c.Key)
		buf = append(buf, ':')
		switch {
		case !c.OK:
			buf = append(buf, "null"...)
		case shape == BucketTops:
			buf = jsonenc.AppendTopValues(buf, c.Top, t)
		case shape == BucketLists && t == aggregations.TypeString:
			buf = append(buf, '[')
			for j, x := range c.Strs {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = jsonenc.AppendString(buf, x)
			}
			buf = append(buf, ']')
		case shape == BucketLists:
			buf = append(buf, '[')
			for j, x := range c.List {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendJSONValue(buf, x, t)
			}
			buf = append(buf, ']')
		case t == aggregations.TypeString:
			buf = jsonenc.AppendString(buf, c.Str)
		default:
			buf = appendJSONValue(buf, c.Value, t)
		}
	}
	return string(append(buf, '}'))
}

// appendJSONValue appends x, a number of output type t, as the lookup
// service writes it: true or false, a whole long, or a double as
// encoding/json writes it.
func appendJSONValue(buf []byte, x float64, t aggregations.ValueType) []byte {
	switch t {
	case aggregations.TypeBool:
		return strconv.AppendBool(buf, x != 0)
	case aggregations.TypeLong:
		return strconv.AppendInt(buf, int64(x), 10)
	}
	return jsonenc.AppendFloat(buf, x)
}

// parquetBucketNode is the Parquet type of a bucketed column: an optional
// MAP from a STRING key to an optional value: of the column's output type
// (BucketScalars), a LIST of required elements of it (BucketLists), or a
// top_k's LIST of {value, count} (BucketTops, parquetTopNode). Its leaf
// columns: the key's, then the value's (two for BucketTops: value, count).
func parquetBucketNode(t aggregations.ValueType, shape BucketShape) parquet.Node {
	var value parquet.Node
	switch shape {
	case BucketTops:
		value = parquetTopNode(t)
	case BucketLists:
		value = parquet.Optional(parquet.List(parquet.Required(parquetLeaf(t))))
	default:
		value = parquet.Optional(parquetLeaf(t))
	}
	return parquet.Optional(parquet.Map(parquet.String(), value))
}

// bucketLeaves is the number of leaf columns of a bucketed column of shape
// shape (parquetBucketNode).
func bucketLeaves(shape BucketShape) int {
	if shape == BucketTops {
		return 3
	}
	return 2
}

// appendBucketValues appends the Parquet values of a map cell to vals: the
// key column's (leaf kc), then the value column's (kc+1; for BucketTops
// the value's, kc+1, then the count's, kc+2). Definition levels: 0 a null
// map, 1 an empty one, 2 an entry (and a null value), 3 a value (for a
// list: an empty list), 4 an element of a list; repetition level 1 at each
// entry after the first, 2 at each element of a list after its first.
func appendBucketValues(vals []parquet.Value, cells []BucketCell, ok bool, t aggregations.ValueType, shape BucketShape, kc int) []parquet.Value {
	leaves := bucketLeaves(shape)
	switch {
	case !ok:
		for l := range leaves {
			vals = append(vals, parquet.NullValue().Level(0, 0, kc+l))
		}
		return vals
	case len(cells) == 0:
		for l := range leaves {
			vals = append(vals, parquet.NullValue().Level(0, 1, kc+l))
		}
		return vals
	}
	for e, c := range cells {
		vals = append(vals, parquet.ByteArrayValue([]byte(c.Key)).Level(min(e, 1), 2, kc))
	}
	if shape == BucketScalars {
		for e, c := range cells {
			switch {
			case !c.OK:
				vals = append(vals, parquet.NullValue().Level(min(e, 1), 2, kc+1))
			case t == aggregations.TypeString:
				vals = append(vals, parquet.ByteArrayValue([]byte(c.Str)).Level(min(e, 1), 3, kc+1))
			default:
				vals = append(vals, parquetValue(c.Value, t).Level(min(e, 1), 3, kc+1))
			}
		}
		return vals
	}
	// A list per entry, column by column (a top_k's values, then counts).
	for l := 1; l < leaves; l++ {
		col := kc + l
		for e, c := range cells {
			rep := min(e, 1)
			n := len(c.List)
			switch {
			case shape == BucketTops:
				n = len(c.Top)
			case t == aggregations.TypeString:
				n = len(c.Strs)
			}
			switch {
			case !c.OK:
				vals = append(vals, parquet.NullValue().Level(rep, 2, col))
				continue
			case n == 0:
				vals = append(vals, parquet.NullValue().Level(rep, 3, col))
				continue
			}
			for j := range n {
				var v parquet.Value
				switch {
				case shape == BucketTops && l == 2:
					v = parquet.Int64Value(c.Top[j].Count)
				case shape == BucketTops && t == aggregations.TypeString:
					v = parquet.ByteArrayValue([]byte(c.Top[j].Str))
				case shape == BucketTops:
					v = parquetValue(c.Top[j].Value, t)
				case t == aggregations.TypeString:
					v = parquet.ByteArrayValue([]byte(c.Strs[j]))
				default:
					v = parquetValue(c.List[j], t)
				}
				if j > 0 {
					rep = 2
				}
				vals = append(vals, v.Level(rep, 4, col))
			}
		}
	}
	return vals
}
