package feastflight

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	entitykeys "github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/feastrepo"
)

// timestampColumn is the entity dataframe's column of T, as Feast names it.
// Without it, the only timestamp column is T (Feast's own inference).
const timestampColumn = "event_timestamp"

// batchRows bounds the rows of one answered record batch (one gRPC message).
const batchRows = 32 << 10

// request is a resolved get_historical_features: per requested feature,
// its definition, its backfill reference and its output column name.
type request struct {
	feats []*config.Feature
	names []string
}

// resolve checks the command's feature views and references against the
// feature file.
func (s *Server) resolve(cmd *command) (*request, error) {
	if cmd.EntityDFSQL != nil {
		return nil, invalid("an entity dataframe given as SQL is not supported: pass a pandas DataFrame")
	}
	if len(cmd.FeatureRefs) == 0 {
		return nil, invalid("no features requested")
	}
	views := map[string]bool{}
	for _, v := range cmd.FeatureViewNames {
		views[v] = true
	}
	req := &request{}
	for _, ref := range cmd.FeatureRefs {
		view, name, ok := strings.Cut(ref, ":")
		if !ok {
			return nil, invalid("feature reference %q: want feature_view:feature", ref)
		}
		inView := s.viewFeatures(view)
		if len(inView) == 0 {
			return nil, invalid("unknown feature view %q: featurepipe's feature views are its sources with features (%s), and <source>_<entity> for re-keyed features; regenerate the repository with featurepipe feast-repo", view, s.viewNames())
		}
		if len(views) > 0 && !views[view] {
			return nil, invalid("feature reference %q names a feature view the request does not list", ref)
		}
		f, err := s.o.Config.Feature(name)
		if err != nil || feastrepo.ViewName(f) != view {
			return nil, invalid("feature view %q has no feature %q: its features are %s", view, name, featureNames(inView))
		}
		out := name
		if cmd.FullFeatureNames {
			out = view + "__" + name
		}
		req.feats = append(req.feats, f)
		req.names = append(req.names, out)
	}
	return req, nil
}

// viewFeatures are the features (all versions, file order) of the Feast
// feature view named view (feastrepo.ViewName), none for an unknown view.
func (s *Server) viewFeatures(view string) []*config.Feature {
	var out []*config.Feature
	for _, f := range s.o.Config.Features {
		if feastrepo.ViewName(f) == view {
			out = append(out, f)
		}
	}
	return out
}

func (s *Server) viewNames() string {
	var out []string
	for _, f := range s.o.Config.Features {
		if v := feastrepo.ViewName(f); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", ")
}

func featureNames(fs []*config.Feature) string {
	var out []string
	for _, f := range fs {
		if len(out) == 0 || out[len(out)-1] != f.Name {
			out = append(out, f.Name)
		}
	}
	return strings.Join(out, ", ")
}

// answer computes a get_historical_features command for the entity table
// recs (schema) and streams the entity table with the feature columns.
func (s *Server) answer(ctx context.Context, cmd *command, schema *arrow.Schema, recs []arrow.RecordBatch, w flight.DataStreamWriter) error {
	t0 := time.Now()
	req, err := s.resolve(cmd)
	if err != nil {
		return s.fail(cmd, err)
	}
	cols, rows, err := concat(schema, recs, s.mem)
	if err != nil {
		return s.fail(cmd, err)
	}
	defer releaseArrays(cols)
	if len(recs) == 1 && len(schema.Fields()) == 1 && schema.Field(0).Name == "key" {
		return s.fail(cmd, invalid("no entity dataframe: pass one with the join keys and %s", timestampColumn))
	}
	times, err := timesOf(schema, cols)
	if err != nil {
		return s.fail(cmd, err)
	}
	out, err := s.compute(ctx, req, schema, cols, times, rows)
	if err != nil {
		return s.fail(cmd, err)
	}
	defer releaseArrays(out)
	fields := append([]arrow.Field(nil), schema.Fields()...)
	for j, f := range req.feats {
		fields = append(fields, arrow.Field{Name: req.names[j], Type: outType(f), Nullable: true})
	}
	outSchema := arrow.NewSchema(fields, nil)
	all := append(append([]arrow.Array(nil), cols...), out...)
	rec := array.NewRecordBatch(outSchema, all, int64(rows))
	defer rec.Release()
	wr := flight.NewRecordWriter(w, ipc.WithSchema(outSchema), ipc.WithAllocator(s.mem))
	for from := int64(0); from < int64(rows) || from == 0; from += batchRows {
		part := rec.NewSlice(from, min(from+batchRows, int64(rows)))
		err := wr.Write(part)
		part.Release()
		if err != nil {
			return fmt.Errorf("featurepipe: send the answer: %w", err)
		}
		if rows == 0 {
			break
		}
	}
	if err := wr.Close(); err != nil {
		return fmt.Errorf("featurepipe: send the answer: %w", err)
	}
	s.log.Info("Feast get_historical_features answered", zap.Int("rows", rows), zap.Strings("features", cmd.FeatureRefs),
		zap.Duration("took", time.Since(t0)))
	return nil
}

func (s *Server) fail(cmd *command, err error) error {
	s.log.Info("Feast get_historical_features refused", zap.Strings("features", cmd.FeatureRefs), zap.Error(err))
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Internal, "featurepipe: %v", err)
}

// outType is a feature's Arrow type: int64 for count (Feast's Int64 field),
// list<double> for first_k and last_k (Feast's Array(Float64)), utf8 for
// top_k (Feast's String: the JSON text of the list, as the lookup API
// writes the value), float64 otherwise; null for NOT_FOUND rows and empty avg/min/max/last (and an
// empty list's window).
//
// A feature whose output type (config.Feature.OutputType) is a long is
// int64 (list<int64>), a boolean bool (list<bool>), a string utf8
// (list<utf8>): Feast's Int64, Bool, String, Array(Int64), Array(Bool),
// Array(String). A bucketed feature is a map<utf8, value> of the
// unbucketed feature's type (Feast's Map; a bucketed top_k's value is a
// list<struct<value, count>>, see bucketItemType).
func outType(f *config.Feature) arrow.DataType {
	if f.Bucket != "" { // a map from bucket to value (Feast's Map)
		return arrow.MapOf(arrow.BinaryTypes.String, bucketItemType(f))
	}
	switch f.Aggregation {
	case aggregations.Count:
		return arrow.PrimitiveTypes.Int64
	case aggregations.TopK: // the JSON text of the list: Feast's String
		return arrow.BinaryTypes.String
	}
	elem := elemType(f.OutputType())
	if f.Aggregation.List() {
		return arrow.ListOf(elem)
	}
	return elem
}

// elemType is the Arrow type of one value of output type t.
func elemType(t aggregations.ValueType) arrow.DataType {
	switch t {
	case aggregations.TypeLong:
		return arrow.PrimitiveTypes.Int64
	case aggregations.TypeBool:
		return arrow.FixedWidthTypes.Boolean
	case aggregations.TypeString:
		return arrow.BinaryTypes.String
	}
	return arrow.PrimitiveTypes.Float64
}

// appendValue appends x, of output type t, to b, a builder of elemType(t).
func appendValue(b array.Builder, x float64, t aggregations.ValueType) {
	switch t {
	case aggregations.TypeLong:
		b.(*array.Int64Builder).Append(int64(x))
	case aggregations.TypeBool:
		b.(*array.BooleanBuilder).Append(x != 0)
	default:
		b.(*array.Float64Builder).Append(x)
	}
}

// compute runs the backfill engine once per entity of the requested
// features (backfill.Compute takes one entity) and returns one column per
// feature, in request order.
func (s *Server) compute(ctx context.Context, req *request, schema *arrow.Schema, cols []arrow.Array, times []int64, rows int) ([]arrow.Array, error) {
	out := make([]arrow.Array, len(req.feats))
	done := map[string]bool{}
	for _, first := range req.feats {
		ent := first.EntityRef
		if done[ent.Name] {
			continue
		}
		done[ent.Name] = true
		// One column per join key (a composite entity has several); the
		// entity key is built as on every read path (keys.EntityKey).
		keyCols := make([][]string, len(ent.Keys))
		for c, k := range ent.Keys {
			idx := schema.FieldIndices(k)
			if len(idx) != 1 {
				return nil, invalid("the entity dataframe has no %q column: entity %s's join key (columns: %s)", k, ent.Name, columnNames(schema))
			}
			var err error
			if keyCols[c], err = keysOf(k, cols[idx[0]]); err != nil {
				return nil, err
			}
		}
		keys := keyCols[0]
		if len(keyCols) > 1 {
			keys = make([]string, rows)
			vals := make([]string, len(keyCols))
			for i := range keys {
				for c := range keyCols {
					vals[c] = keyCols[c][i]
				}
				keys[i] = entitykeys.EntityKey(vals)
			}
		}
		var refs []string
		var at []int
		for j, f := range req.feats {
			if f.Entity == ent.Name {
				refs = append(refs, f.Name)
				at = append(at, j)
			}
		}
		points := make([]backfill.Point, rows)
		for i := range points {
			points[i] = backfill.Point{Key: keys[i], T: times[i]}
		}
		v, err := backfill.Compute(ctx, backfill.Options{Brokers: s.o.Brokers, Config: s.o.Config, Features: refs,
			Snapshots: s.o.Snapshots, Limits: s.o.Limits, Log: s.log}, points)
		if err != nil {
			if errors.Is(err, backfill.ErrInvalidOptions) {
				return nil, invalid("%v", err)
			}
			return nil, err
		}
		for c, j := range at {
			out[j] = column(req.feats[j], v, c, rows, s.mem)
		}
	}
	return out, nil
}

// column builds feature column c of v, of type outType(f).
func column(f *config.Feature, v *backfill.Values, c, rows int, mem memory.Allocator) arrow.Array {
	t := f.OutputType()
	if v.IsTop(c) { // top_k: utf8, the JSON text of the list (Feast's String), null when empty
		b := array.NewStringBuilder(mem)
		defer b.Release()
		for i := 0; i < rows; i++ {
			if l, ok := v.Top(i, c); ok {
				b.Append(backfill.TopJSON(l, t))
			} else {
				b.AppendNull()
			}
		}
		return b.NewArray()
	}
	if v.IsBuckets(c) { // a bucketed feature: a map
		return bucketColumn(f, v, c, rows, mem)
	}
	if v.IsString(c) { // last, first, first_k, last_k of a string field
		return stringColumn(v, c, rows, mem)
	}
	if v.IsList(c) { // first_k, last_k: a list, null when empty
		b := array.NewListBuilder(mem, elemType(t))
		defer b.Release()
		elems := b.ValueBuilder()
		for i := 0; i < rows; i++ {
			l, ok := v.List(i, c)
			if !ok {
				b.AppendNull()
				continue
			}
			b.Append(true)
			for _, x := range l {
				appendValue(elems, x, t)
			}
		}
		return b.NewArray()
	}
	if f.Aggregation == aggregations.Count {
		t = aggregations.TypeLong
	}
	b := array.NewBuilder(mem, elemType(t))
	defer b.Release()
	for i := 0; i < rows; i++ {
		if x, ok := v.Get(i, c); ok {
			appendValue(b, x, t)
		} else {
			b.AppendNull()
		}
	}
	return b.NewArray()
}

// bucketItemType is the Arrow type of one bucket's value of bucketed
// feature f: as outType of the unbucketed feature (int64 for count,
// list<elem> for first_k and last_k), except top_k, whose bucket is its
// list itself: list<struct<value: elem, count: int64>> (unbucketed, a
// top_k is the utf8 JSON text of that list for Feast's String; in a Map
// the list reads natively in every Feast version this targets).
func bucketItemType(f *config.Feature) arrow.DataType {
	switch {
	case f.Aggregation == aggregations.Count:
		return arrow.PrimitiveTypes.Int64
	case f.Aggregation == aggregations.TopK:
		return arrow.ListOfNonNullable(arrow.StructOf(
			arrow.Field{Name: "value", Type: elemType(f.OutputType())},
			arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64}))
	case f.Aggregation.List():
		return arrow.ListOfNonNullable(elemType(f.OutputType()))
	}
	return elemType(f.OutputType())
}

// bucketColumn builds bucketed feature column c of v: a map<utf8, value>
// (bucketItemType) by increasing key, null when the value is null; a
// bucket whose value is null (variance_samp of one event) has a null item.
func bucketColumn(f *config.Feature, v *backfill.Values, c, rows int, mem memory.Allocator) arrow.Array {
	t := f.OutputType()
	if f.Aggregation == aggregations.Count {
		t = aggregations.TypeLong
	}
	shape := v.BucketShape(c)
	b := array.NewMapBuilderWithType(mem, outType(f).(*arrow.MapType))
	defer b.Release()
	keys, items := b.KeyBuilder().(*array.StringBuilder), b.ItemBuilder()
	for i := 0; i < rows; i++ {
		cells, ok := v.Buckets(i, c)
		if !ok {
			b.AppendNull()
			continue
		}
		b.Append(true)
		for _, cell := range cells {
			keys.Append(cell.Key)
			switch {
			case !cell.OK:
				items.AppendNull()
			case shape == backfill.BucketTops:
				appendTops(items.(*array.ListBuilder), cell.Top, t)
			case shape == backfill.BucketLists && t == aggregations.TypeString:
				lb := items.(*array.ListBuilder)
				lb.Append(true)
				lb.ValueBuilder().(*array.StringBuilder).AppendValues(cell.Strs, nil)
			case shape == backfill.BucketLists:
				lb := items.(*array.ListBuilder)
				lb.Append(true)
				for _, x := range cell.List {
					appendValue(lb.ValueBuilder(), x, t)
				}
			case t == aggregations.TypeString:
				items.(*array.StringBuilder).Append(cell.Str)
			default:
				appendValue(items, cell.Value, t)
			}
		}
	}
	return b.NewArray()
}

// appendTops appends a top_k list (most frequent first) to lb, a builder
// of list<struct<value, count>> (bucketItemType), values of output type t.
func appendTops(lb *array.ListBuilder, l []backfill.TopValue, t aggregations.ValueType) {
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StructBuilder)
	vb, cb := sb.FieldBuilder(0), sb.FieldBuilder(1).(*array.Int64Builder)
	for _, x := range l {
		sb.Append(true)
		if t == aggregations.TypeString {
			vb.(*array.StringBuilder).Append(x.Str)
		} else {
			appendValue(vb, x.Value, t)
		}
		cb.Append(x.Count)
	}
}

// stringColumn builds string feature column c of v: utf8, or list<utf8>
// for first_k and last_k; null when empty.
func stringColumn(v *backfill.Values, c, rows int, mem memory.Allocator) arrow.Array {
	if v.IsList(c) {
		b := array.NewListBuilder(mem, arrow.BinaryTypes.String)
		defer b.Release()
		elems := b.ValueBuilder().(*array.StringBuilder)
		for i := 0; i < rows; i++ {
			l, ok := v.StrList(i, c)
			if !ok {
				b.AppendNull()
				continue
			}
			b.Append(true)
			elems.AppendValues(l, nil)
		}
		return b.NewArray()
	}
	b := array.NewStringBuilder(mem)
	defer b.Release()
	for i := 0; i < rows; i++ {
		if x, ok := v.Str(i, c); ok {
			b.Append(x)
		} else {
			b.AppendNull()
		}
	}
	return b.NewArray()
}

// concat joins each column's chunks into one array.
func concat(schema *arrow.Schema, recs []arrow.RecordBatch, mem memory.Allocator) ([]arrow.Array, int, error) {
	cols := make([]arrow.Array, len(schema.Fields()))
	rows := 0
	for _, r := range recs {
		rows += int(r.NumRows())
	}
	for j := range cols {
		var parts []arrow.Array
		for _, r := range recs {
			parts = append(parts, r.Column(j))
		}
		if len(parts) == 0 {
			cols[j] = array.MakeArrayOfNull(mem, schema.Field(j).Type, 0)
			continue
		}
		a, err := array.Concatenate(parts, mem)
		if err != nil {
			releaseArrays(cols)
			return nil, 0, invalid("entity dataframe column %q: %v", schema.Field(j).Name, err)
		}
		cols[j] = a
	}
	return cols, rows, nil
}

func releaseArrays(as []arrow.Array) {
	for _, a := range as {
		if a != nil {
			a.Release()
		}
	}
}

func emptyBatch(schema *arrow.Schema, mem memory.Allocator) arrow.RecordBatch {
	cols := make([]arrow.Array, len(schema.Fields()))
	for j, f := range schema.Fields() {
		cols[j] = array.MakeArrayOfNull(mem, f.Type, 0)
	}
	defer releaseArrays(cols)
	return array.NewRecordBatch(schema, cols, 0)
}

func columnNames(schema *arrow.Schema) string {
	var out []string
	for _, f := range schema.Fields() {
		out = append(out, f.Name)
	}
	return strings.Join(out, ", ")
}

// timesOf returns each row's T in epoch milliseconds from the timestamp
// column: event_timestamp, else the only timestamp column. A T with
// sub-millisecond digits is rounded up, as a spine's (backfill.CeilMilli).
func timesOf(schema *arrow.Schema, cols []arrow.Array) ([]int64, error) {
	j := -1
	if idx := schema.FieldIndices(timestampColumn); len(idx) == 1 {
		j = idx[0]
	} else {
		var found []int
		for k, f := range schema.Fields() {
			if f.Type.ID() == arrow.TIMESTAMP {
				found = append(found, k)
			}
		}
		if len(found) != 1 {
			return nil, invalid("the entity dataframe needs an %q column (a timestamp: the time as of which each row's features are computed); columns: %s",
				timestampColumn, columnNames(schema))
		}
		j = found[0]
	}
	name := schema.Field(j).Name
	ts, ok := cols[j].(*array.Timestamp)
	if !ok {
		return nil, invalid("entity dataframe column %q is %s, not a timestamp: convert it with pandas.to_datetime(..., utc=True)", name, cols[j].DataType())
	}
	unit := ts.DataType().(*arrow.TimestampType).Unit
	out := make([]int64, ts.Len())
	for i := range out {
		if ts.IsNull(i) {
			return nil, invalid("entity dataframe row %d: %q is null", i, name)
		}
		out[i] = backfill.CeilMilli(ts.Value(i).ToTime(unit))
	}
	return out, nil
}

// keysOf returns a join-key column as featurepipe keys: strings as they
// are, integers in decimal.
func keysOf(name string, a arrow.Array) ([]string, error) {
	out := make([]string, a.Len())
	for i := range out {
		if a.IsNull(i) {
			return nil, invalid("entity dataframe row %d: join key %q is null", i, name)
		}
		switch c := a.(type) {
		case *array.String:
			out[i] = c.Value(i)
		case *array.LargeString:
			out[i] = c.Value(i)
		case *array.StringView:
			out[i] = c.Value(i)
		case *array.Int64:
			out[i] = strconv.FormatInt(c.Value(i), 10)
		case *array.Int32:
			out[i] = strconv.FormatInt(int64(c.Value(i)), 10)
		default:
			return nil, invalid("entity dataframe column %q is %s: join keys must be strings or integers", name, a.DataType())
		}
		if out[i] == "" {
			return nil, invalid("entity dataframe row %d: join key %q is empty", i, name)
		}
	}
	return out, nil
}
