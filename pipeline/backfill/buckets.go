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
// bucket's events, as the lookup service serves it.
type BucketCell struct {
	Key string
	// Value is the bucket's value for a column whose output type is not
	// TypeString (a long and a boolean as the float64 the IR holds, as
	// Values.Get gives them).
	Value float64
	// Str is the bucket's value for a column of output type TypeString.
	Str string
	// OK is false when the bucket's value is null (a variance_samp or
	// stddev_samp of one event).
	OK bool
}

// bucketCells finalizes the IR of a bucketed column as the lookup service
// does (aggregations.FinalizeBuckets, then the kind per bucket): the map's
// cells by increasing key; ok is false for null (an empty window of a kind
// whose empty value is null); an empty window of count, sum or
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
	for i, b := range bs {
		cells[i].Key = b.Key
		if str {
			cells[i].Str, cells[i].OK = aggregations.FinalizeString(col.plan.Kind, b.IR)
			continue
		}
		cells[i].Value, cells[i].OK = aggregations.Finalize(col.plan.Kind, b.IR)
	}
	return cells, true
}

// isBucket reports whether column col holds maps (a bucketed feature's).
func (r *results) isBucket(col int) bool { return r.bucketCol != nil && r.bucketCol[col] }

// setBuckets sets a cell of a bucketed column.
func (r *results) setBuckets(row, col int, cells []BucketCell, ok bool, st cellStatus) {
	i := row*len(r.columns) + col
	if !ok {
		cells = nil
	}
	r.bkts[i], r.valid[i], r.status[i] = cells, ok, st
}

// markBuckets marks the columns of cols whose feature is bucketed,
// allocating their cells.
func (r *results) markBuckets(cols []column) {
	for c, col := range cols {
		if col.feature.Bucket == "" {
			continue
		}
		if r.bucketCol == nil {
			r.bucketCol = make([]bool, len(r.columns))
			r.bkts = make([][]BucketCell, len(r.values))
		}
		r.bucketCol[c] = true
	}
}

// bucketStats adds a map to s as the worker's published-value statistics
// do: the list of its buckets' values (numbers; the strings of a string
// feature), so that the null rate counts null maps and the lengths are the
// numbers of buckets. Per-bucket statistics are not kept (a bucket key is
// data: a column per key would not be bounded).
func bucketStats(s *monitor.Stats, cells []BucketCell, ok bool, t aggregations.ValueType) {
	if t == aggregations.TypeString {
		var l []string
		for _, c := range cells {
			if c.OK {
				l = append(l, c.Str)
			}
		}
		s.AddStringList(l, ok)
		return
	}
	var l []float64
	for _, c := range cells {
		if c.OK {
			l = append(l, c.Value)
		}
	}
	s.AddList(l, ok)
}

// bucketsJSON is the JSON text of a map (a CSV cell): an object from bucket
// key to value, keys in increasing order, each value as the lookup service
// writes it (a number, a whole long, true or false, a string, null).
func bucketsJSON(cells []BucketCell, t aggregations.ValueType) string {
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
		case t == aggregations.TypeString:
			buf = jsonenc.AppendString(buf, c.Str)
		case t == aggregations.TypeBool:
			buf = strconv.AppendBool(buf, c.Value != 0)
		case t == aggregations.TypeLong:
			buf = strconv.AppendInt(buf, int64(c.Value), 10)
		default:
			buf = jsonenc.AppendFloat(buf, c.Value)
		}
	}
	return string(append(buf, '}'))
}

// parquetBucketNode is the Parquet type of a bucketed column: an optional
// MAP from a STRING key to an optional value of the column's output type.
func parquetBucketNode(t aggregations.ValueType) parquet.Node {
	return parquet.Optional(parquet.Map(parquet.String(), parquet.Optional(parquetLeaf(t))))
}

// appendBucketValues appends the Parquet values of a map cell to vals: the
// key column's (leaf kc) then the value column's (kc+1). Definition levels:
// 0 a null map, 1 an empty one, 2 an entry (and a null value), 3 a value;
// repetition level 1 after the first entry.
func appendBucketValues(vals []parquet.Value, cells []BucketCell, ok bool, t aggregations.ValueType, kc int) []parquet.Value {
	switch {
	case !ok:
		return append(vals, parquet.NullValue().Level(0, 0, kc), parquet.NullValue().Level(0, 0, kc+1))
	case len(cells) == 0:
		return append(vals, parquet.NullValue().Level(0, 1, kc), parquet.NullValue().Level(0, 1, kc+1))
	}
	for e, c := range cells {
		vals = append(vals, parquet.ByteArrayValue([]byte(c.Key)).Level(min(e, 1), 2, kc))
	}
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
