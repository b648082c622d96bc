package aggregations

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// Bucketed features (`bucket: merchant_category` on any aggregation): the
// design, summarized in the package doc (doc.go, "Buckets").
//
// Where the bucket lives: in the tile. The IR of a window made WithBuckets
// keeps, besides its exact fields over all its events, a map from bucket key
// to a sub-IR of that bucket's events. Merging two IRs merges them bucket by
// bucket, so every Series operation (Apply, Read, Expire, pending events,
// encoding) works for bucketed features unchanged, and a read folds the
// window's tiles per bucket exactly as it folds unbucketed ones. A sub-IR is
// an ordinary IR of the feature's kind: it keeps the kind's sketch, k list or
// strings, so every aggregation that merges can be bucketed, and each
// bucket's value is finalized by the ordinary Finalize, FinalizeString,
// FinalizeList or FinalizeStringList.
//
// How the key arrives: as Event.Bucket, a string the decoder (pipeline/events)
// makes from the bucket field of the record: a string as it is, a long or int
// in decimal, a boolean as "true" or "false", and a null (an optional field
// that is absent) as NullBucket. A null is a bucket, not a dropped event, so
// that the bucketed counts add up to the unbucketed ones.
//
// Bounds: a tile (and a lifetime Base) keeps at most BucketsMax buckets. An
// event of a new bucket arriving at a tile that already holds BucketsMax
// buckets goes to that tile's OtherBucket; an Expire that merges tiles into a
// lifetime Base beyond BucketsMax buckets folds Base's least-populated
// buckets (fewest events, ties: the larger key) into OtherBucket. A value is
// therefore exact while every tile of its window (and Base) has seen at most
// BucketsMax distinct buckets; beyond, the buckets that fold first are chosen
// by arrival order and are approximate, though every event is still counted
// (in OtherBucket). A read merges the window's tiles without a bound: its
// transient IR may hold up to BucketsMax buckets per tile.
//
// The tile budget: a bucketed tile whose buckets keep more than the exact
// fields (a sketch, a k list, value counts or strings: Window.heavyBuckets)
// can outgrow what one feature-log record may carry (Kafka's default
// message is 1 MiB) long before BucketsMax buckets: 1000 buckets of a
// top_k of strings would take ~260 MB. Such a tile (and a lifetime Base)
// keeps its encoded size within TileBytesBudget (512 KiB): when an event
// opens a bucket, or the tile's Count crosses a multiple of
// sizeCheckEvery, it measures its encoding (irLen, without encoding) and,
// past the budget, folds its least-populated buckets (ranked's order,
// the lowest first) into OtherBucket until it is back within three
// quarters of it (or only OtherBucket is left, which is at most one
// bucket of the kind's largest size, ~300 KB). Expire does the same for a
// lifetime Base after merging tiles into it. So a tile stays under about
// TileBytesBudget plus sizeCheckEvery events' growth (~40 KB). Values are
// exact while every tile of the window fits its budget (and BucketsMax);
// beyond, as beyond BucketsMax, a folded bucket's later events open it
// again in that tile and its value is approximate, though every event is
// still counted. Both triggers are functions of the tile's content and the
// events applied, so a restarted worker and a backfill replaying the same
// events in the same order fold a tile at the same events (a lifetime
// Base, which only Expire folds and a backfill never builds, aside). Cost: nothing for
// exact number kinds (BucketsMax of their buckets fit the budget); for the
// others a few comparisons per event, and a walk of the tile (linear in
// its size) at a check point only when the size last measured plus a
// bound on what the events since added could be past the budget.
//
// The fold at finalize (FinalizeBuckets) is exact: it keeps the maxBuckets
// most populated buckets (by event count; ties: the smaller key first) and
// merges every other one, and any OtherBucket the tiles folded, into
// OtherBucket. For every kind OtherBucket's value is the kind's value over
// the merged events of the folded buckets (the count of their events, the
// avg of their values, the last of them, ...), because it is their merged
// IR. A real bucket whose key is OtherBucket is merged with the fold.
//
// Costs: a bucketed tile costs a map and a sub-IR (about 150 bytes, plus
// the kind's sketch or list) per bucket, so at most about BucketsMax*150
// bytes per tile of an exact kind; its encoding writes each bucket's key and
// sub-IR as a tile's IR is written (see AppendTile). Apply costs a map
// lookup more than an unbucketed Apply, and allocates when a bucket is new
// to the tile.

// BucketsMax is the number of buckets a tile or a lifetime Base keeps
// before it folds further ones into OtherBucket (see above), and the
// largest max_buckets a feature may ask for.
const BucketsMax = 1000

// DefaultMaxBuckets is the number of buckets a bucketed value keeps when a
// feature does not set max_buckets.
const DefaultMaxBuckets = 100

// OtherBucket is the key under which a value (and a tile beyond BucketsMax)
// folds the buckets it does not keep.
const OtherBucket = "__other__"

// NullBucket is the key of events whose bucket field is null.
const NullBucket = "__null__"

// bucketSet is the bucket part of an IR: the sub-IR of each bucket's events.
// Invariants: every sub-IR is non-empty and has no buckets itself; the
// counts of the sub-IRs add up to the Count of the IR that holds them; at
// most BucketsMax keys besides OtherBucket.
type bucketSet struct {
	m map[string]*IR
	// size is the encoded size of the IR holding the set as last measured
	// by foldToBudget (0: not measured since it was decoded or merged into),
	// and grown a bound on what the events folded in since then added to
	// it (see growthBound): checkBudget skips measuring while size+grown
	// is within the budget. Neither is encoded: both are a cache, and the
	// folds do not depend on them.
	size, grown int
}

// updateBucketed folds e into ir's exact fields and into the sub-IR of its
// bucket (created with the sketch w asks for; a bucket beyond BucketsMax
// goes to OtherBucket).
func (ir *IR) updateBucketed(e Event, w Window) {
	key := e.Bucket
	e.Bucket = ""
	bk := ir.bk
	ir.bk = nil
	ir.update(e, Window{}) // the exact fields only: the sketches live per bucket
	if bk == nil {
		bk = &bucketSet{m: make(map[string]*IR, 4)}
	}
	ir.bk = bk
	sub := bk.m[key]
	if sub == nil {
		if bk.named() >= BucketsMax && key != OtherBucket {
			key = OtherBucket
			sub = bk.m[key]
		}
		if sub == nil {
			sub = &IR{}
			bk.m[key] = sub
		}
	}
	var dense bool
	if sub.hll != nil {
		dense = sub.hll.dense != nil
	}
	sub.update(e, w.unbucketed())
	bk.grown += growthBound(e)
	if sub.hll != nil && sub.hll.dense != nil && !dense {
		bk.grown += hllM // registers turned dense
	}
}

// growthBound bounds what folding e into an existing bucket adds to the
// encoding of the IR holding it: the exact fields' flags and varints (at
// most ~110 bytes), a list entry, value counter or quantile key (at most
// ~30 bytes), and e's string twice (a Last and a First string, with
// their lengths). A sketch's registers turning dense add hllM more (see
// updateBucketed); an event that opens a bucket is measured anyway.
func growthBound(e Event) int { return 160 + 2*(len(e.Str)+binary.MaxVarintLen64) }

// named is the number of buckets other than OtherBucket.
func (b *bucketSet) named() int {
	if _, ok := b.m[OtherBucket]; ok {
		return len(b.m) - 1
	}
	return len(b.m)
}

func (b *bucketSet) clone() *bucketSet {
	c := &bucketSet{m: make(map[string]*IR, len(b.m)), size: b.size, grown: b.grown}
	for k, sub := range b.m {
		s := sub.Clone()
		c.m[k] = &s
	}
	return c
}

// merge folds o's buckets into b, bucket by bucket (no bound: see foldTo).
func (b *bucketSet) merge(o *bucketSet) {
	b.size, b.grown = 0, 0 // not measured since
	for k, sub := range o.m {
		if mine := b.m[k]; mine != nil {
			mine.merge(sub)
			continue
		}
		s := sub.Clone()
		b.m[k] = &s
	}
}

// ranked returns the keys other than OtherBucket, most populated first
// (ties: the smaller key first).
func (b *bucketSet) ranked() []string {
	keys := make([]string, 0, len(b.m))
	for k := range b.m {
		if k != OtherBucket {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y string) int {
		if c := cmp.Compare(b.m[y].Count, b.m[x].Count); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	return keys
}

// foldTo merges every bucket beyond the n most populated into OtherBucket,
// in rank order (deterministic).
func (b *bucketSet) foldTo(n int) {
	if b.named() <= n {
		return
	}
	keys := b.ranked()
	other := b.m[OtherBucket]
	if other == nil {
		other = &IR{}
		b.m[OtherBucket] = other
	}
	for _, k := range keys[n:] {
		other.merge(b.m[k])
		delete(b.m, k)
	}
}

// foldBuckets bounds ir's buckets to BucketsMax (see bucket.go's doc): used
// where IRs merge into state that lives on (a lifetime Base).
func (ir *IR) foldBuckets() {
	if ir.bk != nil {
		ir.bk.foldTo(BucketsMax)
	}
}

// TileBytesBudget bounds the encoded size of a bucketed tile's IR (and of a
// lifetime Base) whose buckets keep a sketch, a list, value counts or
// strings: past it, the tile folds its least-populated buckets into
// OtherBucket (see "The tile budget" above). 512 KiB keeps a tile's
// feature-log record under Kafka's default max.message.bytes (1 MiB) with
// room for the growth between checks (at most sizeCheckEvery events) and
// for OtherBucket itself, which is at most one bucket of the kind's largest
// size (about 300 KB: a top_k of TopKExactMax 256-byte strings, a
// last_k of MaxK of them, or a quantile sketch spanning the whole float64
// range).
const TileBytesBudget = 512 << 10

// sizeCheckEvery is how often, in events, a heavy bucketed tile checks its
// size besides when an event opens a bucket: when its Count crosses a
// multiple of sizeCheckEvery. One event grows a bucket by at most about
// 600 bytes (a 256-byte string and key, a list entry, a register), so a
// tile grows at most ~40 KB past the budget between checks.
const sizeCheckEvery = 64

// heavyBuckets reports whether w's buckets can outgrow the tile budget: a
// bucketed window whose sub-IRs keep more than the exact fields (a sketch,
// a k list, value counts or strings). An exact number kind's bucket is at
// most ~370 bytes encoded (a 256-byte key included), so BucketsMax of them
// stay within TileBytesBudget and those windows never check.
func (w Window) heavyBuckets() bool {
	return w.sketch&withBuckets != 0 && w.sketch&^withBuckets != 0
}

// budgetMark is what an Apply must remember to decide whether the tile's
// size is due for a check (see checkBudget): its Count and number of
// buckets before the Apply.
type budgetMark struct {
	count   int64
	buckets int
}

func (ir *IR) mark() budgetMark { return budgetMark{ir.Count, ir.BucketCount()} }

// checkBudget folds ir to the tile budget (foldToBudget) when the Apply
// that began at m opened a bucket or made Count cross a multiple of
// sizeCheckEvery. Both are functions of the tile's content and the events
// applied, so a replay of the same events (a restarted worker, backfill)
// folds at the same events. ref is the tile's Start (sizes are those of
// its encoding).
//
// It measures only when the size last measured plus what the events since
// may have added (bucketSet.size and grown) could be past the budget, so
// a tile well within it costs nothing more than that sum.
func (ir *IR) checkBudget(m budgetMark, ref int64) {
	bk := ir.bk
	if bk == nil || (len(bk.m) == m.buckets && ir.Count/sizeCheckEvery == m.count/sizeCheckEvery) {
		return
	}
	if bk.size > 0 && bk.size+bk.grown <= TileBytesBudget && len(bk.m) == m.buckets {
		return
	}
	ir.foldToBudget(ref)
}

// foldToBudget folds ir's least-populated buckets (the order of ranked, the
// lowest first) into OtherBucket while ir's encoding with reference ref is
// larger than TileBytesBudget, aiming at three quarters of it so that a tile
// at the edge does not fold again at its next check; it stops when no named
// bucket is left. Cost: O(encoded size) to measure, which is linear in the
// tile and allocates nothing, and O(b log b) per fold for b buckets.
func (ir *IR) foldToBudget(ref int64) {
	for ir.bk != nil {
		size := irLen(ir, ref)
		ir.bk.size, ir.bk.grown = size, 0
		if size <= TileBytesBudget || ir.bk.named() == 0 {
			return
		}
		keys := ir.bk.ranked()
		lens := make([]int, len(keys))
		rest := size // the size without the named buckets
		for i, k := range keys {
			lens[i] = bucketLen(k, ir.bk.m[k], ref)
			rest -= lens[i]
		}
		keep := 0
		for keep < len(keys)-1 && rest+lens[keep] <= TileBytesBudget/4*3 {
			rest += lens[keep]
			keep++
		}
		ir.bk.foldTo(keep)
	}
}

// Bucket is one entry of a bucketed value: a bucket key and the IR of its
// events, to finalize with the feature's kind (Finalize, FinalizeString,
// FinalizeList, FinalizeStringList).
type Bucket struct {
	Key string
	IR  IR
}

// FinalizeBuckets turns the IR of a bucketed feature (a window made
// WithBuckets) into its buckets: the maxBuckets most populated (by event
// count; ties: the smaller key first) and, when any other bucket exists,
// OtherBucket with the merged IR of all the others (and of any OtherBucket
// the tiles folded). The result is sorted by key, so at most maxBuckets+1
// entries; maxBuckets < 1 means DefaultMaxBuckets. An empty IR, or one
// without buckets, gives nil: callers show the kind's empty value as an
// empty map for the kinds whose empty value is 0 (Kind.EmptyIsZero) and
// null for the others. The returned IRs are the caller's (copies).
// Cost: O(b log b) for b buckets, and one IR copy per bucket.
func FinalizeBuckets(ir IR, maxBuckets int) []Bucket {
	if ir.Count == 0 || ir.bk == nil {
		return nil
	}
	if maxBuckets < 1 {
		maxBuckets = DefaultMaxBuckets
	}
	keys := ir.bk.ranked()
	out := make([]Bucket, 0, min(len(keys), maxBuckets)+1)
	for _, k := range keys[:min(len(keys), maxBuckets)] {
		out = append(out, Bucket{Key: k, IR: ir.bk.m[k].Clone()})
	}
	var other IR
	if o := ir.bk.m[OtherBucket]; o != nil {
		other.merge(o)
	}
	if len(keys) > maxBuckets {
		for _, k := range keys[maxBuckets:] {
			other.merge(ir.bk.m[k])
		}
	}
	if other.Count > 0 {
		out = append(out, Bucket{Key: OtherBucket, IR: other})
	}
	slices.SortFunc(out, func(a, b Bucket) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

// BucketCount is the number of buckets ir holds (OtherBucket included), 0
// for an IR without buckets.
func (ir IR) BucketCount() int {
	if ir.bk == nil {
		return 0
	}
	return len(ir.bk.m)
}
