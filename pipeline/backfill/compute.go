package backfill

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// column is one requested feature: where it is computed from and where its
// values go.
type column struct {
	name    string
	feature *config.Feature
	src     int // index into the compute's sources
	plan    events.FeaturePlan
}

// entEvent is one event of one entity, ready for the sweep.
type entEvent struct {
	vis int64 // the event is visible as of T iff vis <= T
	ts  int64
	seq int64 // aggregations.Seq(source partition, offset): the tie-break for last
	vi  int32 // index of its first value in sourceEvents.values / nf
}

// sourceEvents are one source's events grouped by entity: the events of
// entity e are events[off[e]:off[e+1]]. Event vi's values are
// values[vi*nf:(vi+1)*nf] and, for a source with string slots (ns > 0,
// events.Plan.HasStrings), its strings strs[vi*ns:(vi+1)*ns], one per
// Plan.Fields entry.
type sourceEvents struct {
	nf     int
	ns     int // len(plan.Fields) with string slots, else 0
	off    []int32
	events []entEvent
	values []float64
	strs   []string
	nb     int      // len(plan.BucketFields)
	bkts   []string // event vi's bucket keys: bkts[vi*nb:(vi+1)*nb]
}

// bucket is the bucket key of bucket slot b of the event at vi ("" for an
// unbucketed feature, b < 0).
func (se *sourceEvents) bucket(vi int32, b int) string {
	if se.nb == 0 || b < 0 {
		return ""
	}
	return se.bkts[int(vi)*se.nb+b]
}

// str is the string of field slot f of the event at vi ("" for a source
// without string slots or a count).
func (se *sourceEvents) str(vi int32, f int) string {
	if se.ns == 0 || f < 0 {
		return ""
	}
	return se.strs[int(vi)*se.ns+f]
}

// group merges the per-partition events of src by entity (a counting sort)
// and computes each event's visibility time and its tie-break for last,
// aggregations.Seq(partition, offset), as the workers do: an entity's events
// may be in several partitions (producers with different partitioners), and
// the sweep folds them all into one series.
func group(src *sourceReplay, entities int, mode Mode) *sourceEvents {
	nf := src.plan.Width()
	counts := make([]int32, entities+1)
	total := 0
	for _, pe := range src.byPart {
		for _, c := range pe.chunks {
			for _, e := range c.events {
				counts[e.ent+1]++
			}
		}
		total += pe.n
	}
	for i := 1; i <= entities; i++ {
		counts[i] += counts[i-1]
	}
	se := &sourceEvents{nf: nf, off: slices.Clone(counts), events: make([]entEvent, total), values: make([]float64, total*nf)}
	if src.plan.HasStrings() {
		se.ns = len(src.plan.Fields)
		se.strs = make([]string, total*se.ns)
	}
	if nb := len(src.plan.BucketFields); nb > 0 {
		se.nb = nb
		se.bkts = make([]string, total*nb)
	}
	ns, nb := se.ns, se.nb
	pos := counts[:entities]
	for p := range src.byPart {
		pe := &src.byPart[p]
		part := src.ranges[p].Partition
		for _, c := range pe.chunks {
			for k, e := range c.events {
				i := pos[e.ent]
				pos[e.ent]++
				vis := e.ts + 1
				if mode == ModeArrival {
					vis = max(vis, e.arrival)
				}
				se.events[i] = entEvent{vis: vis, ts: e.ts, seq: aggregations.Seq(part, e.seq), vi: i}
				copy(se.values[int(i)*nf:int(i+1)*nf], c.values[k*nf:(k+1)*nf])
				if ns > 0 {
					copy(se.strs[int(i)*ns:int(i+1)*ns], c.strs[k*ns:(k+1)*ns])
				}
				if nb > 0 {
					copy(se.bkts[int(i)*nb:int(i+1)*nb], c.bkts[k*nb:(k+1)*nb])
				}
			}
		}
		*pe = partEvents{} // release
	}
	return se
}

// compute sweeps every entity with spine rows, GOMAXPROCS entities at a time.
// times are the rows' T; rowsOff/rows group the rows by entity like
// sourceEvents. seeded holds the entities' state loaded from snapshots (nil:
// none); the sweep takes it over.
func compute(ctx context.Context, times []int64, rowsOff []int32, rows []int32, srcs []*sourceEvents, seeded seeds, cols []column, res *results) error {
	entities := len(rowsOff) - 1
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), max(entities, 1))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sw := newSweeper(len(srcs), cols, seeded == nil)
			for ctx.Err() == nil {
				e := int(next.Add(1) - 1)
				if e >= entities {
					return
				}
				sw.entity(times, rows[rowsOff[e]:rowsOff[e+1]], e, srcs, seeded[int32(e)], cols, res)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// sweeper holds one worker's reusable state.
type sweeper struct {
	series  []aggregations.Series // per column; only those of owner columns are used
	cursor  []int                 // per source: next event to apply
	srcCols [][]int               // per source: the owner columns it feeds, ascending
	// owner is, per column, the column whose series it reads: itself, or
	// an earlier column of the same source, window and field, without a
	// where. An IR holds every aggregation's fields (count, sum, min, max,
	// last, ...), so such columns fold the same events into the same
	// tiles and differ only in Finalize: one series serves them all.
	owner   []int
	irs     []aggregations.IR // per owner column: its read as of the current row
	removed []int64
}

// seriesKey is what makes two columns' series identical.
type seriesKey struct {
	src    int
	window aggregations.Window
	field  int
	bucket int // the bucket slot (-1: none): buckets by two fields are two series
}

// newSweeper returns a sweeper for nsrc sources and cols (each col.src <
// nsrc). share lets columns share a series (see sweeper.owner); not with
// snapshots, whose state is per feature (a feature added later holds less).
func newSweeper(nsrc int, cols []column, share bool) *sweeper {
	sw := &sweeper{series: make([]aggregations.Series, len(cols)), cursor: make([]int, nsrc), srcCols: make([][]int, nsrc),
		owner: make([]int, len(cols)), irs: make([]aggregations.IR, len(cols))}
	owners := map[seriesKey]int{}
	for c, col := range cols {
		sw.owner[c] = c
		if share && !col.plan.Filtered() {
			k := seriesKey{col.src, col.plan.Window, col.plan.FieldIdx, col.plan.BucketIdx}
			if o, ok := owners[k]; ok {
				sw.owner[c] = o
				continue
			}
			owners[k] = c
		}
		sw.srcCols[col.src] = append(sw.srcCols[col.src], c)
	}
	return sw
}

// entity computes every column of one entity's rows. seed, when not nil,
// is the entity's state from snapshots, one series per column, every event
// in it before the earliest row's T; entity takes it over.
func (sw *sweeper) entity(times []int64, rows []int32, e int, srcs []*sourceEvents, seed []aggregations.Series, cols []column, res *results) {
	slices.SortFunc(rows, func(a, b int32) int {
		return cmp.Or(cmp.Compare(times[a], times[b]), cmp.Compare(a, b))
	})
	for s, se := range srcs {
		evs := se.events[se.off[e]:se.off[e+1]]
		slices.SortFunc(evs, func(a, b entEvent) int {
			return cmp.Or(cmp.Compare(a.vis, b.vis), cmp.Compare(a.ts, b.ts), cmp.Compare(a.seq, b.seq))
		})
		sw.cursor[s] = 0
	}
	// known: the entity had an event before the row's T (the status
	// contract's NOT_FOUND rule, as the lookup's first-seen marker): every
	// seeded event is before every row's T.
	known := false
	if seed != nil {
		known = !seed[len(cols)].Base.Empty()
		for c := range cols {
			known = known || len(seed[c].Tiles) > 0 || !seed[c].Base.Empty()
		}
	}
	for c := range sw.series {
		if seed != nil && (len(seed[c].Tiles) > 0 || !seed[c].Base.Empty()) {
			// Its pending events (ts >= the worker's clock) stay pending:
			// Apply with NoClock never promotes, and Read folds those with
			// ts < T, which is all of them (they are before every row's T).
			sw.series[c] = seed[c]
			seed[c] = aggregations.Series{}
			continue
		}
		sw.series[c].Tiles = sw.series[c].Tiles[:0]
		sw.series[c].Base = aggregations.IR{}
	}
	for _, r := range rows {
		T := times[r]
		// Apply every event visible as of T; each has ts < T.
		for s, se := range srcs {
			evs := se.events[se.off[e]:se.off[e+1]]
			i := sw.cursor[s]
			known = known || (i < len(evs) && evs[i].vis <= T)
			for ; i < len(evs) && evs[i].vis <= T; i++ {
				ev := &evs[i]
				for _, c := range sw.srcCols[s] {
					col := &cols[c]
					vals := se.values[int(ev.vi)*se.nf : int(ev.vi+1)*se.nf]
					if !col.plan.CountsIn(vals) {
						continue // the feature's where excludes the event
					}
					v := 0.0
					if col.plan.FieldIdx >= 0 {
						v = vals[col.plan.FieldIdx]
					}
					sw.series[c].Apply(col.plan.Window, aggregations.Event{TS: ev.ts, Seq: ev.seq, Value: v, Str: se.str(ev.vi, col.plan.FieldIdx),
						Bucket: se.bucket(ev.vi, col.plan.BucketIdx)}, aggregations.NoClock)
				}
			}
			sw.cursor[s] = i
		}
		for c := range cols {
			col := &cols[c]
			if sw.owner[c] == c {
				// Rows are in T order, so tiles no later read can touch may go;
				// for lifetime windows they fold into Base. Keeps reads O(window).
				sw.removed, _ = sw.series[c].Expire(col.plan.Window, T, sw.removed[:0])
				sw.irs[c] = sw.series[c].Read(col.plan.Window, T)
			}
			ir := sw.irs[sw.owner[c]]
			st := statusPresent
			switch {
			case !known:
				st = statusNotFound
			case col.feature.Expired(ir, T): // the lookup service's TTL rule
				st, ir = statusExpired, aggregations.IR{}
			case ir.Empty():
				st = statusEmptyWindow
			}
			if col.feature.Bucket != "" { // a map: see bucketCells
				cells, ok := bucketCells(col, ir)
				res.setBuckets(int(r), c, cells, ok && known, st)
				continue
			}
			if col.plan.Kind == aggregations.TopK { // null when empty, no default
				l, ok := topOf(col.plan.Window, ir)
				res.setTop(int(r), c, l, aggregations.TopKError(ir), ok && known, st)
				continue
			}
			if col.plan.Window.Strings() { // last, first, first_k, last_k of a string field: null when empty, no default
				if col.plan.Kind.List() {
					l, ok := aggregations.FinalizeStringList(col.plan.Kind, ir)
					res.setStrList(int(r), c, l, ok && known, st)
					continue
				}
				s, ok := aggregations.FinalizeString(col.plan.Kind, ir)
				res.setStr(int(r), c, s, ok && known, st)
				continue
			}
			if col.plan.Kind.List() { // first_k, last_k: null when empty, no default
				l, ok := aggregations.FinalizeList(col.plan.Kind, ir)
				if !known {
					l, ok = nil, false
				}
				res.setList(int(r), c, l, ok, st)
				continue
			}
			v, ok := aggregations.Finalize(col.plan.Kind, ir)
			if !ok && col.feature.Default != nil {
				v, ok = *col.feature.Default, true
			}
			if !known { // NOT_FOUND: null, whatever the aggregation
				v, ok = 0, false
			}
			res.set(int(r), c, v, ok, st)
		}
	}
}
