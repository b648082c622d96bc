// Package aggregations is the single definition of every featurepipe computation:
// aggregation kinds and their intermediate representation (IR), windows, and the
// hop-aligned tiles that hold one entity's state for one feature version.
//
// The stream workers, the lookup service and the backfill job all call these same
// functions, so a feature computed online and the same feature computed for
// training agree by construction.
//
// # Semantics
//
// The value of a feature as of time T (int64 epoch milliseconds) is the aggregation
// over the entity's events whose event time ts satisfies
//
//	floor(T - Size, Hop) <= ts < T
//
// a sawtooth window between Size and Size+Hop long, exact at its leading edge and
// strictly before T (an event stamped exactly T never leaks into its own features).
// Lifetime windows (Size == 0) take every event with ts < T. floor is a true floor,
// also for negative times.
//
// last is the value of the event with the latest event time in the window; a tie on
// event time is won by the larger Seq, never by arrival order. Callers build Seq with
// the Seq function from the record's source partition and Kafka offset: the later
// offset wins within a partition, the higher partition across partitions (producers
// with different partitioners put one entity's events in several partitions).
//
// first mirrors last: the value of the event with the earliest event time; a tie is
// won by the smaller Seq (the earlier offset).
//
// first_k and last_k (k between 1 and MaxK) are lists: the values of the k
// earliest events oldest first, and of the k latest newest first, ordered by
// (event time, Seq) exactly as first and last (FinalizeList). Each tile keeps
// only its own k first or last events, which is enough: the k first of a
// window are among the k first of its tiles. Merging keeps the k first of
// both lists, a function of the set of events whatever the merge order.
//
// top_k (k between 1 and MaxK) is a list of the k most frequent values with
// their counts, most frequent first, ties by value ascending (FinalizeTopK,
// FinalizeStringTopK).
//
// Empty windows are explicit: count, sum and approx_distinct give 0; every other
// kind gives null (Finalize returns ok=false; first_k, last_k and top_k too), and variance_samp and stddev_samp
// are null below two events.
//
// # Operators and their error bounds
//
// count, sum, avg, min, max, last, first and the variances are exact (sums and
// variances up to floating-point rounding). variance and stddev are population
// statistics (divided by n), variance_samp and stddev_samp sample statistics
// (divided by n-1); all four come from (count, mean, M2), updated with Welford's
// method and merged with Chan et al.'s formula, accurate to about ulp(mean)/stddev
// relative (1e-7 for values like 1e9 + 0.3).
//
// approx_distinct is exact up to DistinctExactMax (128) distinct values, beyond a
// HyperLogLog estimate (4096 registers, relative standard error 1.04/sqrt(4096) =
// 1.625%; see hll.go). approx_percentile with percentile p is a DDSketch estimate within 1%
// relative of the exact value of rank floor(p*(n-1)) in the sorted values (a
// guarantee; see quantiles.go). Both sketches merge exactly (register max, bucket
// counts), so every merge order gives the identical value online and in backfill.
// Their IRs hold the sketch behind a pointer, allocated only for the windows made
// with Window.For of those kinds; the exact kinds never allocate.
//
// top_k counts every value exactly while an IR has seen at most TopKExactMax
// (1000) distinct values (a function of the multiset: every merge order gives
// the identical value); beyond, it is a mergeable Misra-Gries summary whose
// counts are at most N/(TopKKept+1) = N/501 below the true ones for N events
// (a guarantee; see topk.go), and which depends on the order of updates and
// merges within that bound.
//
// Both sketches are implemented here rather than taken from a library (DESIGN.md
// keeps this package standard-library only, and the issue asked for a sketch
// library): the IR needs an estimate that is a pure function of the merged state
// whatever the merge order, and a compact canonical encoding per tile that this
// package versions. The HLL++ libraries (axiomhq/hyperloglog, datasketches-go)
// estimate from a sparse higher-precision mode whose switch to dense registers
// depends on insertion and merge history, and DataDog/sketches-go keeps a dense
// float64 array per bucket range (KiBs per tile) with its own encodings; KLL
// (datasketches) is randomized and merge-order dependent.
//
// # State
//
// A Series keeps one IR per hop-aligned Tile. Late events update their tile whenever
// they arrive; reads fold the tiles inside the window. Tiles that can no longer be in
// any window read at or after the caller's clock are removed by Expire (finite
// windows) or folded into the Base IR (lifetime windows). Events stamped at or after
// the caller's clock are kept per tile as Pending so that the leading edge stays
// exact for every read time T at or after that clock, up to PendingBytesBudget of
// them per tile (past it the earliest are folded into the IR at once: a read before
// such an event's time includes it).
//
// A read as of T is exact when every event folded into a tile's IR has ts < T. That
// holds for every T at or after every clock value passed to Apply and Expire for the
// series: the writer's clock must not run ahead of the reader's. Replays and
// backfills pass NoClock as the clock (nothing is pending, dropped or expired) and
// then must read as of T before applying any event with ts >= T in the tile holding
// T-1, e.g. by applying events in event-time order and reading between them.
//
// # Buckets
//
// A window made WithBuckets (a feature with `bucket:`) keeps in every IR a
// sub-IR per bucket key (Event.Bucket), merged bucket by bucket, so every
// kind that merges can be bucketed and every Series operation is unchanged.
// FinalizeBuckets keeps the max_buckets most populated buckets (by event
// count, ties: the smaller key) and merges the others into OtherBucket. A
// tile or lifetime Base keeps at most BucketsMax buckets (further ones fold
// into OtherBucket there), and a tile of a kind whose buckets keep a
// sketch, a list, value counts or strings keeps its encoding within
// TileBytesBudget (512 KiB) by folding its least-populated buckets into
// OtherBucket: values are exact while every tile has seen at most
// BucketsMax distinct buckets and fits its budget. bucket.go states the
// design in full.
//
// The package is pure: no I/O, no goroutines, no locks, standard library only. A
// Series is not safe for concurrent use.
package aggregations
