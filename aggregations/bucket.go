package aggregations

import (
	"cmp"
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
	sub.update(e, w.unbucketed())
}

// named is the number of buckets other than OtherBucket.
func (b *bucketSet) named() int {
	if _, ok := b.m[OtherBucket]; ok {
		return len(b.m) - 1
	}
	return len(b.m)
}

func (b *bucketSet) clone() *bucketSet {
	c := &bucketSet{m: make(map[string]*IR, len(b.m))}
	for k, sub := range b.m {
		s := sub.Clone()
		c.m[k] = &s
	}
	return c
}

// merge folds o's buckets into b, bucket by bucket (no bound: see foldTo).
func (b *bucketSet) merge(o *bucketSet) {
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
