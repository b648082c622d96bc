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
// Empty windows are explicit: count and sum give 0, avg, min, max and last give null
// (Finalize returns ok=false).
//
// # State
//
// A Series keeps one IR per hop-aligned Tile. Late events update their tile whenever
// they arrive; reads fold the tiles inside the window. Tiles that can no longer be in
// any window read at or after the caller's clock are removed by Expire (finite
// windows) or folded into the Base IR (lifetime windows). Events stamped at or after
// the caller's clock are kept per tile as Pending so that the leading edge stays
// exact for every read time T at or after that clock.
//
// A read as of T is exact when every event folded into a tile's IR has ts < T. That
// holds for every T at or after every clock value passed to Apply and Expire for the
// series: the writer's clock must not run ahead of the reader's. Replays and
// backfills pass NoClock as the clock (nothing is pending, dropped or expired) and
// then must read as of T before applying any event with ts >= T in the tile holding
// T-1, e.g. by applying events in event-time order and reading between them.
//
// The package is pure: no I/O, no goroutines, no locks, standard library only. A
// Series is not safe for concurrent use.
package aggregations
