package backfill

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// Point is one row of an in-memory spine: an entity key and the time T its
// features are computed as of (epoch ms; events with ts < T count).
type Point struct {
	Key string
	T   int64
}

// Values are the feature values Compute returns: one row per Point, in the
// order given, and one column per requested feature.
type Values struct {
	// Columns name the feature columns like Run's output does: "name", or
	// "name@N" when N is not the default version.
	Columns []string
	// Features are the definitions of Columns, in the same order.
	Features []*config.Feature
	// Sources are the offsets replayed per topic and partition, sorted.
	Sources []OffsetRange
	// Events count the records replayed.
	Events EventStats

	res *results
}

// Rows is the number of points.
func (v *Values) Rows() int {
	if len(v.Columns) == 0 {
		return 0
	}
	return len(v.res.values) / len(v.Columns)
}

// Get returns the value of column col for point row; ok is false for null
// (an empty window of avg, min, max or last without a default). A list
// column (IsList) or a string column (IsString) has no number: Get returns
// 0 and whether the value is not null; read it with List, Str or StrList.
func (v *Values) Get(row, col int) (value float64, ok bool) {
	i := row*len(v.Columns) + col
	return v.res.values[i], v.res.valid[i]
}

// IsList reports whether column col is a list feature's (first_k, last_k),
// whose values List returns.
func (v *Values) IsList(col int) bool { return v.res.isList(col) }

// List returns the value of list column col (IsList) for point row, ordered
// as the aggregation defines (last_k newest first), the same list Run
// writes; ok is false for null (an empty window, NOT_FOUND, EXPIRED) and
// for a column that is not a list of numbers (see StrList). The slice is
// shared: do not modify it.
func (v *Values) List(row, col int) (list []float64, ok bool) {
	if !v.res.isList(col) || v.res.isString(col) {
		return nil, false
	}
	i := row*len(v.Columns) + col
	return v.res.lists[i], v.res.valid[i]
}

// IsString reports whether column col is a string feature's (last, first,
// first_k, last_k of a string field), whose values Str (or, for a list,
// StrList) returns; Get and List return nothing for it.
func (v *Values) IsString(col int) bool { return v.res.isString(col) }

// Str returns the value of string column col (IsString, not IsList) for
// point row, as Run writes it; ok is false for null (an empty window,
// NOT_FOUND, EXPIRED) and for a column that is not a string.
func (v *Values) Str(row, col int) (s string, ok bool) {
	if !v.res.isString(col) || v.res.isList(col) || v.res.isTop(col) {
		return "", false
	}
	i := row*len(v.Columns) + col
	return v.res.strs[i], v.res.valid[i]
}

// StrList returns the value of string list column col (IsString and
// IsList) for point row, ordered as the aggregation defines (last_k newest
// first); ok is false for null and for another column. The slice is
// shared: do not modify it.
func (v *Values) StrList(row, col int) (list []string, ok bool) {
	if !v.res.isString(col) || !v.res.isList(col) {
		return nil, false
	}
	i := row*len(v.Columns) + col
	return v.res.strLists[i], v.res.valid[i]
}

// IsBuckets reports whether column col is a bucketed feature's (a map,
// config.Feature.Bucket), whose values Buckets returns; Get, List, Str and
// StrList return nothing for it.
func (v *Values) IsBuckets(col int) bool { return v.res.isBucket(col) }

// BucketShape is what each bucket of bucketed column col (IsBuckets)
// holds: BucketScalars, BucketLists (first_k, last_k) or BucketTops
// (top_k); NotBuckets for another column.
func (v *Values) BucketShape(col int) BucketShape { return v.res.bucketShape(col) }

// Buckets returns the value of bucketed column col (IsBuckets) for point
// row, by increasing key (at most the feature's max_buckets and
// "__other__"), the map Run writes; ok is false for null (an empty window
// of a kind whose empty value is null, NOT_FOUND, EXPIRED) and for another
// column; an empty window of count, sum or approx_distinct is an empty
// map. The slice is shared: do not modify it.
func (v *Values) Buckets(row, col int) (cells []BucketCell, ok bool) {
	if !v.res.isBucket(col) {
		return nil, false
	}
	i := row*len(v.Columns) + col
	return v.res.bkts[i], v.res.valid[i]
}

// Status returns the status of column col for point row, as the lookup
// service would answer it as of the point's T (without WARMING_UP, which
// is about serving): StatusPresent, StatusEmptyWindow, StatusNotFound or
// StatusExpired (an aggregated feature's ttl). A derived feature is
// StatusNotFound or StatusPresent.
func (v *Values) Status(row, col int) string {
	return v.res.status[row*len(v.Columns)+col].String()
}

// Compute is Run with the spine in memory and the values returned instead of
// written: the same replay, the same sweep and the same aggregation code, so
// a value Compute returns is exactly the cell Run would write for a spine row
// with that key and timestamp. It is what `featurepipe skew` replays served
// lookups through.
//
// Options.Features (or FeatureService) is required (there are no spine columns to pick an
// entity from) and every feature must belong to one entity. Spine, Out and
// SkipBadRows are ignored; ExportEvents works as in Run. A point with an
// empty key fails Compute with ErrInvalidOptions. Memory is that of Run:
// O(points x features + events of the points' entities).
func Compute(ctx context.Context, o Options, points []Point) (*Values, error) {
	if err := o.validate(false); err != nil {
		return nil, err
	}
	if len(o.Features) == 0 {
		return nil, fmt.Errorf("%w: Compute needs Features", ErrInvalidOptions)
	}
	keys := make([]string, len(points))
	times := make([]int64, len(points))
	for i, p := range points {
		if p.Key == "" {
			return nil, fmt.Errorf("%w: point %d has an empty key", ErrInvalidOptions, i)
		}
		keys[i], times[i] = p.Key, p.T
	}
	_, cols, err := resolveColumns(o.Config, o.Features, &spine{path: "(in-memory spine)"})
	if err != nil {
		return nil, err
	}
	feats := make([]*config.Feature, len(cols))
	for i, c := range cols {
		feats[i] = c.feature
	}
	ev, err := o.evaluate(ctx, cols, keys, times)
	if err != nil {
		return nil, err
	}
	v := &Values{Sources: ev.ranges, res: ev.res,
		Events: EventStats{Records: ev.stats.records.Load(), Kept: ev.stats.kept.Load(), Rejected: ev.stats.rejected}}
	for _, c := range cols {
		v.Columns = append(v.Columns, c.name)
		v.Features = append(v.Features, c.feature)
	}
	if v.Sources == nil {
		v.Sources = []OffsetRange{}
	}
	return v, nil
}

// evaluation is what evaluate computed.
type evaluation struct {
	res    *results
	ranges []OffsetRange
	stats  *replayStats
	// rows are the indices of the rows computed (res row i is input row
	// rows[i]): a shard's rows (Options.Shard); nil when every row is.
	rows []int
}

// evaluate is the engine shared by Run and Compute: it replays the sources
// of cols and computes every column for rows (keys[i], times[i]); with
// Options.Shard, only for the shard's rows (evaluation.rows), from its
// partitions. Derived columns are evaluated from the aggregated features
// they read, which are computed like any column (see expandDerived).
//
// A shard plans its replay (start offsets, snapshots) from every row's
// time, not only its own: what it reads is then exactly its part of what
// the single-process run reads, and every partition is read by one shard,
// which checks it for other shards' entities (ErrNotCanonical).
func (o *Options) evaluate(ctx context.Context, visible []column, rowKeys []string, times []int64) (*evaluation, error) {
	cfg := o.Config
	cols := expandDerived(visible)
	sharded := o.Shard.Sharded()

	// Sources and their replay start.
	srcs, err := planSources(cfg, cols, times, o.Limits.MaxFuture.Milliseconds())
	if err != nil {
		return nil, err
	}
	st := &replayStats{rejected: map[string]int64{}}
	var ranges []OffsetRange
	var seeded seeds
	var copts []kgo.Opt
	var ownedRows []int
	if len(rowKeys) > 0 || sharded {
		copts, err = kafka.BaseOpts(kafka.ConnOf(o.Brokers, cfg), "featurepipe-backfill", o.Log)
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		copts = append(copts, o.ExtraOpts...)
		adm, err := kgo.NewClient(copts...)
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		for _, s := range srcs {
			if err := listRanges(ctx, kadm.NewClient(adm), s); err != nil {
				adm.Close()
				return nil, err
			}
		}
		adm.Close()
		if sharded {
			ownedRows = planShard(o.Shard, srcs, rowKeys).owned
			if ownedRows == nil {
				ownedRows = []int{} // none: not "every row"
			}
		}
	}
	allTimes := times
	if sharded {
		keys := make([]string, len(ownedRows))
		ts := make([]int64, len(ownedRows))
		for i, r := range ownedRows {
			keys[i], ts[i] = rowKeys[r], times[r]
		}
		rowKeys, times = keys, ts
	}

	// Key table: entity index per row, rows grouped by entity.
	keep := make(map[string]int32)
	var keys []string
	rowEnt := make([]int32, len(rowKeys))
	for i, k := range rowKeys {
		e, ok := keep[k]
		if !ok {
			e = int32(len(keys))
			keep[k] = e
			keys = append(keys, k)
		}
		rowEnt[i] = e
	}
	keys = packKeys(keep, keys)
	rowsOff := make([]int32, len(keys)+1)
	for _, e := range rowEnt {
		rowsOff[e+1]++
	}
	for i := 1; i < len(rowsOff); i++ {
		rowsOff[i] += rowsOff[i-1]
	}
	rows := make([]int32, len(rowEnt))
	pos := slices.Clone(rowsOff[:len(keys)])
	for i, e := range rowEnt {
		rows[pos[e]] = int32(i)
		pos[e]++
	}

	if copts != nil {
		if o.Snapshots != nil && len(allTimes) > 0 {
			minT := slices.Min(allTimes)
			if seeded, err = o.seedFromSnapshots(ctx, srcs, cols, keep, minT); err != nil {
				return nil, err
			}
		}
		var total int64
		for _, s := range srcs {
			for _, r := range s.ranges {
				total += r.To - r.From
				ranges = append(ranges, r)
			}
		}
		prog := newProgress(o.Progress, total, o.Now())
		err = replay(ctx, copts, srcs, events.NewDecoderWith(cfg, o.Limits, o.SchemaRegistry), keep, prog.add, st)
		prog.finish()
		if err != nil {
			return nil, err
		}
	}
	if o.ExportEvents != "" {
		if err := exportEvents(o.ExportEvents, srcs, keys); err != nil {
			return nil, err
		}
	}

	grouped := make([]*sourceEvents, len(srcs))
	for i, s := range srcs {
		grouped[i] = group(s, len(keys), o.Mode)
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	res := newResults(names, len(rowKeys))
	res.markLists(cols)
	if err := compute(ctx, times, rowsOff, rows, grouped, seeded, cols, res); err != nil {
		return nil, err
	}
	res = deriveResults(visible, cols, res)
	return &evaluation{res: res, ranges: ranges, stats: st, rows: ownedRows}, nil
}

// packKeys copies the distinct keys into one contiguous string and points
// keep and keys at it: the replay looks every event's key up in keep, and
// keys packed together (rather than scattered among the spine's cells) keep
// those look-ups' comparisons in cache. keys[i] keeps its index in keep.
func packKeys(keep map[string]int32, keys []string) []string {
	n := 0
	for _, k := range keys {
		n += len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(k)
	}
	all := b.String()
	packed := make([]string, len(keys))
	clear(keep)
	off := 0
	for i, k := range keys {
		packed[i] = all[off : off+len(k)]
		off += len(k)
		keep[packed[i]] = int32(i)
	}
	return packed
}
