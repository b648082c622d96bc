package worker

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/metrics"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// publisher is the feature log's one writer. It owns the partitions with
// unpublished changes (their dirty tiles and entity caches), when they were
// last published, the first produce error, and the feature-log offsets
// acknowledged so far (which a snapshot's state corresponds to).
//
// mu guards pending and last. The poll goroutine holds it to publish and
// while it moves committed partitions' offsets on (apply); the revoke
// callback, which franz-go runs in its group goroutine (gated by
// BlockRebalanceOnPoll so that it never runs while a poll's records are
// processed, but possibly while the poll goroutine waits for records),
// holds it to publish and drop the revoked partitions (handOver).
type publisher struct {
	cl        *kgo.Client // set by Worker.Run before anything is published
	store     *state.Store
	m         *metrics.Worker
	topic     string
	interval  time.Duration // Options.PublishInterval
	maxCached int           // Options.MaxCachedEntities
	stats     *monitor.Live // Options.Stats; nil: no statistics
	now       func() time.Time

	err atomic.Pointer[error] // the first produce error
	// produced is onProduced bound once: a method value passed per
	// produced record would allocate a closure per tile.
	produced func(*kgo.Record, error)

	flMu      sync.Mutex
	flOffsets map[int32]int64 // feature-log partition -> next offset acknowledged

	mu      sync.Mutex
	pending []*partState // partitions with unpublished changes
	last    time.Time    // the last publication's start
	// gen numbers the publications (dropLocked calls): the generation
	// stamped on the entities each one hands over to the kept ones.
	gen uint64
	// keptParts are the partitions holding kept entities (partState.kept),
	// bounded together by maxCached (evictKeptLocked).
	keptParts map[*partState]struct{}
}

func newPublisher(o Options, m *metrics.Worker) *publisher {
	p := &publisher{store: o.Store, m: m, topic: o.Config.Kafka.FeatureLogTopic, interval: o.PublishInterval,
		maxCached: o.MaxCachedEntities, stats: o.Stats, now: o.Now, flOffsets: map[int32]int64{}, last: time.Now()}
	p.produced = p.onProduced
	return p
}

// start resets the publication clock: the first interval starts now.
func (p *publisher) start() {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
}

// lastPublished returns when the last publication started.
func (p *publisher) lastPublished() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// dueState reports whether the entity caches are full, whether the publish
// interval has passed since the last publication, and whether any change
// is pending (see Worker.publishTrigger).
func (p *publisher) dueState() (full, intervalDue, pending bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cachedEntities() >= p.maxCached, time.Since(p.last) >= p.interval, len(p.pending) > 0
}

// untilDue returns how long a poll may wait before the pending changes are
// due (at least 1ms), or idle when nothing is pending.
func (p *publisher) untilDue(idle time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return idle
	}
	return max(p.interval-time.Since(p.last), time.Millisecond)
}

// addLocked marks ps as having unpublished changes. mu held.
func (p *publisher) addLocked(ps *partState) {
	if !ps.pending {
		ps.pending = true
		p.pending = append(p.pending, ps)
	}
}

// cached is cachedEntities under mu.
func (p *publisher) cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cachedEntities()
}

// cachedEntities is the number of entities cached since the last
// publication, over all partitions: the live stream and bootstraps both
// load through Worker.entity, and only partitions with unpublished changes
// (pending) hold any. Cost: one map length per pending partition. mu held.
func (p *publisher) cachedEntities() int {
	n := 0
	for _, ps := range p.pending {
		n += len(ps.cache)
	}
	return n
}

// publish produces the current value (or a tombstone) of every tile changed
// since the last publication, waits for the acknowledgements, records per
// partition that publication is complete through its committed offset, and
// empties the entity cache. trigger labels the publication in the
// publications metric (Worker.publishTrigger, "shutdown", "snapshot",
// "republish").
func (p *publisher) publish(ctx context.Context, trigger string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = time.Now()
	return p.publishLocked(ctx, nil, trigger)
}

// handOver removes the pending partitions sel accepts, publishing them
// first when publish is set (partitions revoked, not lost). They are
// dropped even when their publication fails: the error is returned, and
// their published offset was not recorded, so a later owner from this
// store republishes.
func (p *publisher) handOver(ctx context.Context, sel func(*partState) bool, publish bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if publish {
		err = p.publishLocked(ctx, sel, "revoke")
	}
	p.dropLocked(sel)
	p.forgetLocked(sel)
	return err
}

// publishChunk is the fewest records a publication builds and produces
// per goroutine (see inChunks): below it, one goroutine does it all.
const publishChunk = 2048

// publishLocked publishes the pending partitions sel accepts (nil: all) as
// publish does and removes them from the pending list. On error they stay
// pending and nothing is recorded as published. mu held.
func (p *publisher) publishLocked(ctx context.Context, sel func(*partState) bool, trigger string) error {
	var parts []*partState
	for _, ps := range p.pending {
		if sel == nil || sel(ps) {
			parts = append(parts, ps)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	p.m.Publications.WithLabelValues(trigger).Inc()
	n := 0
	for _, ps := range parts {
		n += len(ps.dirty)
	}
	// The tiles in publication order (groupedDirty), all partitions one
	// after the other; ends[k] is where parts[k]'s tiles end.
	var order []dirtyEntry
	var ents []*entityState
	ends := make([]int, len(parts))
	for k, ps := range parts {
		order, ents = groupedDirty(order, ents, ps.dirty)
		ends[k] = len(order)
	}
	// Records are built and produced in parallel chunks of the order (a
	// large publication is most of a backlog's time on the poll
	// goroutine): one allocation for all records, one growing slab per
	// chunk for their keys and values (earlier sub-slices stay valid when
	// it grows). Each tile's key is unique within a publication, so the
	// order in which the chunks' records reach the feature log is free.
	recs := make([]kgo.Record, n)
	inChunks(n, publishChunk, runtime.GOMAXPROCS(0), func(_, lo, hi int) {
		slab := make([]byte, 0, (hi-lo)*64)
		k, _ := slices.BinarySearch(ends, lo+1)
		for i := lo; i < hi; i++ {
			for i >= ends[k] {
				k++
			}
			e, r := &order[i], &recs[i]
			r.Topic = p.topic
			if e.ts > 0 {
				// The newest source record folded into the tile since the
				// last publication; zero: franz-go stamps the produce time.
				r.Timestamp = time.UnixMilli(e.ts)
			}
			slab, r.Key, r.Value = appendRecord(slab, parts[k], e.es, e.feature, e.start)
			p.produce(ctx, r)
		}
	})
	p.observe(parts)
	// Not recorded as published on error: a restart republishes these tiles.
	if err := p.flush(ctx, n); err != nil {
		return err
	}
	b := p.store.NewBatch()
	for _, ps := range parts {
		if err := b.Set(keys.Published(ps.tp.topic, ps.tp.partition), keys.PutU64(ps.next), nil); err != nil {
			b.Close()
			return fmt.Errorf("stage published offset: %w", err)
		}
	}
	// Losing this write only causes a harmless republish.
	if err := p.store.CommitNoSync(b); err != nil {
		return fmt.Errorf("record published offsets: %w", err)
	}
	for _, ps := range parts {
		ps.published = ps.next
		ps.mark.Store(max(ps.next, ps.quietUntil))
	}
	p.dropLocked(sel)
	return nil
}

// observe adds to the statistics (Options.Stats) the value as of now of
// every feature version of the entities touched since the last
// publication (the entity cache), a sampled entity at a time. Cost: with
// statistics off, nothing; else per sampled entity and feature one read
// and fold of its tiles in the window and a sketch insert, and one merge
// per publication.
func (p *publisher) observe(parts []*partState) {
	if p.stats == nil {
		return
	}
	now := p.now().UnixMilli()
	b := p.stats.NewBatch()
	var sts []*monitor.Stats
	for _, ps := range parts {
		if len(ps.cache) == 0 {
			continue
		}
		fs := ps.plan.Features
		sts = sts[:0]
		for i := range fs {
			sts = append(sts, b.Stats(fs[i].ID, fs[i].Feature.Name, fs[i].Feature.Version))
		}
		for _, es := range ps.cache {
			if len(es.series) != len(fs) || !p.stats.Sampled() {
				continue
			}
			for i := range fs {
				f := &fs[i]
				if f.Feature.Bucket != "" { // a map: the list of its values, as backfill's manifest
					addBucketStats(sts[i], f, es.series[i].Read(f.Window, now))
					continue
				}
				if f.Kind == aggregations.TopK { // the list of its values, most frequent first: lengths, elements
					ir := es.series[i].Read(f.Window, now)
					if f.Window.Strings() {
						sts[i].AddStringList(aggregations.TopKStrings(ir, f.Window.K()))
					} else {
						sts[i].AddList(aggregations.TopKValues(ir, f.Window.K()))
					}
					continue
				}
				if f.Window.Strings() { // string features: top values (and lengths of lists); no default
					ir := es.series[i].Read(f.Window, now)
					if f.Kind.List() {
						sts[i].AddStringList(aggregations.FinalizeStringList(f.Kind, ir))
					} else {
						sts[i].AddString(aggregations.FinalizeString(f.Kind, ir))
					}
					continue
				}
				if f.Kind.List() { // lengths, elements, top elements; a list takes no default
					sts[i].AddList(aggregations.FinalizeList(f.Kind, es.series[i].Read(f.Window, now)))
					continue
				}
				v, ok := aggregations.Finalize(f.Kind, es.series[i].Read(f.Window, now))
				switch {
				case ok:
					sts[i].AddValue(v)
				case f.Feature.Default != nil:
					sts[i].AddValue(*f.Feature.Default)
				default:
					sts[i].AddNull()
				}
			}
		}
	}
	_ = p.stats.Commit(b) // fails only on sketches of different accuracies: never
}

// dropLocked removes the pending partitions sel accepts (nil: all), with
// their dirty tiles and cached entities. mu held.
func (p *publisher) dropLocked(sel func(*partState) bool) {
	kept := p.pending[:0]
	for _, ps := range p.pending {
		if sel != nil && !sel(ps) {
			kept = append(kept, ps)
			continue
		}
		ps.dirty = emptied(ps.dirty, &ps.dirtyBusiest)
		// The entities just touched join the kept ones, as committed
		// (every batch commits before it is published or dropped; a
		// batch that fails stops the worker), stamped with this
		// publication's generation.
		if ps.kept == nil {
			ps.kept = make(map[string]*entityState, len(ps.cache))
		}
		for k, es := range ps.cache {
			es.gen = p.gen
			ps.kept[k] = es
		}
		ps.cache = emptied(ps.cache, &ps.cacheBusiest)
		ps.pending = false
		if p.keptParts == nil {
			p.keptParts = make(map[*partState]struct{})
		}
		p.keptParts[ps] = struct{}{}
	}
	clear(p.pending[len(kept):])
	p.pending = kept
	p.gen++
	p.evictKeptLocked()
}

// evictKeptLocked bounds the kept entities of all partitions to
// maxCached: once they are more, the entities last touched longest ago
// (by publication generation) go until at most maxCached/2 remain, whole
// generations at a time, the most recent kept, and the newest generation
// (the entities the last publication handed over) always stays: at most
// maxCached kept entities after any publication, as before. An entity touched
// publication after publication (a busy user while the worker publishes
// every poll, an entity of a replay) thus stays decoded, while entities
// seen once (pairs of a two-key entity) go. Cost: nothing below the
// bound; above it two passes over the kept entities, at most once per
// maxCached/2 entities newly kept (amortized O(1) each). mu held.
func (p *publisher) evictKeptLocked() {
	n := 0
	for ps := range p.keptParts {
		n += len(ps.kept)
	}
	if n <= p.maxCached {
		return
	}
	perGen := make(map[uint64]int)
	for ps := range p.keptParts {
		for _, es := range ps.kept {
			perGen[es.gen]++
		}
	}
	gens := make([]uint64, 0, len(perGen))
	for g := range perGen {
		gens = append(gens, g)
	}
	slices.Sort(gens)
	// The newest generation always stays (as before this bound existed,
	// when only the previous interval's entities were kept); older ones
	// while they fit in maxCached/2. Entities of generations before
	// cutoff go.
	cutoff, left := gens[len(gens)-1], perGen[gens[len(gens)-1]]
	for i := len(gens) - 2; i >= 0; i-- {
		if left+perGen[gens[i]] > p.maxCached/2 {
			break
		}
		left += perGen[gens[i]]
		cutoff = gens[i]
	}
	for ps := range p.keptParts {
		for k, es := range ps.kept {
			if es.gen < cutoff {
				delete(ps.kept, k)
			}
		}
		if len(ps.kept) == 0 {
			delete(p.keptParts, ps)
		}
	}
}

// forgetLocked releases the kept entities of the partitions sel accepts:
// they are no longer this worker's. mu held.
func (p *publisher) forgetLocked(sel func(*partState) bool) {
	for ps := range p.keptParts {
		if sel == nil || sel(ps) {
			ps.kept = nil
			delete(p.keptParts, ps)
		}
	}
}

// produce sends one feature-log record (built by appendRecord) without
// waiting; flush waits for it.
//
// The record does not fail when ctx is canceled (a worker stopping while it
// publishes): it stays buffered, and the final publication's flush waits for
// it. A failed record fails every later publication (see flush).
func (p *publisher) produce(ctx context.Context, r *kgo.Record) {
	p.cl.Produce(context.WithoutCancel(ctx), r, p.produced)
}

// flush waits until the n records produced since the last flush are
// acknowledged and fails if any produce failed (since the worker started:
// a failure makes the worker stop).
func (p *publisher) flush(ctx context.Context, n int) error {
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush feature log: %w", err)
	}
	if perr := p.err.Load(); perr != nil {
		return fmt.Errorf("publish to feature log %s: %w", p.topic, *perr)
	}
	p.m.TilesPublished.Add(float64(n))
	return nil
}

func (p *publisher) onProduced(r *kgo.Record, err error) {
	if err == nil {
		p.flMu.Lock()
		if next := r.Offset + 1; next > p.flOffsets[r.Partition] {
			p.flOffsets[r.Partition] = next
		}
		p.flMu.Unlock()
		return
	}
	p.m.Errors.WithLabelValues("publish").Inc()
	p.err.CompareAndSwap(nil, &err)
}

// featureLogOffsets returns, per feature-log partition, the offset after
// the last record acknowledged: a snapshot's state corresponds to them.
func (p *publisher) featureLogOffsets() map[int32]int64 {
	p.flMu.Lock()
	defer p.flMu.Unlock()
	out := make(map[int32]int64, len(p.flOffsets))
	for k, v := range p.flOffsets {
		out[k] = v
	}
	return out
}

// dirtyEntry is a dirty tile with the newest source record timestamp
// folded into it (partState.dirty's key and value).
type dirtyEntry struct {
	dirtyTile
	ts int64
}

// groupedDirty appends the tiles of dirty to dst grouped by entity, the
// entities in the order the worker loaded them (entityState.ord, which is
// about their order in memory), each entity's tiles by feature and start:
// a publication then reads each entity's series one after the other, each
// in its tiles' order, instead of in the map's random order, which made
// finding each tile a cache miss (in a replay of history, 0.2 of the
// worker's ~1.8 CPU-s went to those searches). ents is scratch for the
// entities, returned for reuse.
//
// Cost: two passes over dirty (a count per entity in entityState.pubPos,
// then each tile placed in its entity's segment), a sort of the entities
// and one of each entity's few tiles: one sort of all the tiles cost as
// much as it saved at 200,000 entities. pubPos is 0 again after.
func groupedDirty(dst []dirtyEntry, ents []*entityState, dirty map[dirtyTile]int64) ([]dirtyEntry, []*entityState) {
	ents = ents[:0]
	for d := range dirty {
		if d.es.pubPos == 0 {
			ents = append(ents, d.es)
		}
		d.es.pubPos++
	}
	slices.SortFunc(ents, func(a, b *entityState) int { return cmp.Compare(a.ord, b.ord) })
	// pubPos becomes each entity's segment start, then (as tiles are
	// placed) its end.
	pos := len(dst)
	for _, es := range ents {
		n := es.pubPos
		es.pubPos = pos
		pos += n
	}
	dst = slices.Grow(dst, len(dirty))[:pos]
	for d, ts := range dirty {
		dst[d.es.pubPos] = dirtyEntry{d, ts}
		d.es.pubPos++
	}
	start := pos - len(dirty)
	for _, es := range ents {
		slices.SortFunc(dst[start:es.pubPos], func(a, b dirtyEntry) int {
			if c := cmp.Compare(a.feature, b.feature); c != 0 {
				return c
			}
			return cmp.Compare(a.start, b.start)
		})
		start, es.pubPos = es.pubPos, 0
	}
	return dst, ents
}

// appendRecord appends the feature-log record of tile start of feature
// (an index into ps.plan.Features, or seenFeature for the entity's
// first-seen marker) of es, in ps's source partition, to slab with the
// feature-log codec (internal/featurelog), returning slab and the key and
// value sub-slices. The value is the tile's current value in es, or nil (a
// tombstone) when the tile no longer exists; a marker is always a value.
// Every feature-log record the worker produces is built here.
func appendRecord(slab []byte, ps *partState, es *entityState, feature int, start int64) (out, key, value []byte) {
	ref := keys.TileRef{Entity: ps.plan.Entity, EntityKey: es.key, SourcePartition: ps.tp.partition, Start: start}
	if feature == seenFeature {
		ref.FeatureID, ref.Start = ps.seenID, aggregations.BaseStart
		return featurelog.Append(slab, ref, aggregations.Tile{Start: aggregations.BaseStart, IR: es.seen.Base}, true)
	}
	ref.FeatureID = ps.plan.Features[feature].ID
	t, ok := es.series[feature].Tile(start)
	return featurelog.Append(slab, ref, t, ok)
}

// addBucketStats adds the value of a bucketed feature (a map, see
// aggregations.FinalizeBuckets) to st as backfill's manifest statistics
// do: the list of its buckets' non-null values (strings for a string
// feature), null for a null map; for a map of lists (first_k, last_k,
// top_k) the buckets' lists one after the other by increasing key (a
// top_k's values without their counts). Per-bucket statistics are not
// kept: a bucket key is data, and a statistic per key would not be bounded.
func addBucketStats(st *monitor.Stats, f *events.FeaturePlan, ir aggregations.IR) {
	bs := aggregations.FinalizeBuckets(ir, f.Feature.MaxBuckets)
	ok := len(bs) > 0 || f.Kind.EmptyIsZero()
	if f.Feature.OutputType() == aggregations.TypeString {
		var l []string
		for _, b := range bs {
			switch {
			case f.Kind == aggregations.TopK:
				v, _ := aggregations.TopKStrings(b.IR, f.Window.K())
				l = append(l, v...)
			case f.Kind.List():
				v, _ := aggregations.FinalizeStringList(f.Kind, b.IR)
				l = append(l, v...)
			default:
				if v, vok := aggregations.FinalizeString(f.Kind, b.IR); vok {
					l = append(l, v)
				}
			}
		}
		st.AddStringList(l, ok)
		return
	}
	var l []float64
	for _, b := range bs {
		switch {
		case f.Kind == aggregations.TopK:
			v, _ := aggregations.TopKValues(b.IR, f.Window.K())
			l = append(l, v...)
		case f.Kind.List():
			v, _ := aggregations.FinalizeList(f.Kind, b.IR)
			l = append(l, v...)
		default:
			if v, vok := aggregations.Finalize(f.Kind, b.IR); vok {
				l = append(l, v)
			}
		}
	}
	st.AddList(l, ok)
}

// emptied empties m for the next publication interval: clear(m) keeps its
// memory, so a map that grew large once (a catch-up, a replay) would make
// every later iteration and clear cost its largest size, not its entries
// (Go's maps iterate and clear all their slots: ~1 ms per call for a map
// that once held 500,000 entries, against 0.5 µs for one that holds its 10).
// So a map whose entries at this publication are under 1/16 of the most it
// held since it was allocated (*busiest, updated here), and that held more
// than 4,096, is replaced by a new one sized for its current entries
// instead. Cost: one allocation per shrink, at most once per such drop.
func emptied[K comparable, V any](m map[K]V, busiest *int) map[K]V {
	n := len(m)
	*busiest = max(*busiest, n)
	if *busiest > 4096 && n < *busiest/16 {
		*busiest = n
		return make(map[K]V, n)
	}
	clear(m)
	return m
}
