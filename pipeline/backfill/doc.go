// Package backfill builds point-in-time training data: for every row of a
// spine (an entity key, a timestamp T and any label columns) it computes the
// requested features as of T by replaying the source topics through the same
// decoder (pipeline/events) and the same aggregation code (aggregations) that
// the stream workers and the lookup service use.
//
// Run reads the spine from a file and writes the output to one; Compute
// takes the spine as in-memory Points and returns the Values, through the
// same engine (pipeline/skew replays served lookups with it).
//
// # Semantics
//
// A feature's value for a spine row is the aggregation over the entity's
// events with floor(T - W, hop) <= ts < T (lifetime windows: ts < T), exactly
// as DESIGN.md defines it, exact at the leading edge for every row's own T.
// With ModeArrival an event must also have arrived by T: its Kafka record
// timestamp must be <= T. Empty windows give 0 for count and sum and null for
// the others, or the feature's default when it declares one.
//
// Source records are decoded and validated by events.Decoder; a record the
// decoder rejects is skipped, exactly as a worker dead-letters it. The
// future-time check ("event time more than MaxFuture after now") uses the
// record's Kafka timestamp as now: what a worker saw when it processed the
// record shortly after it arrived. A worker that lagged far behind could have
// accepted a record that the backfill rejects; that record was also far in the
// future when it arrived, so it was invalid by the contract anyway.
//
// # What is replayed
//
// Per source topic, Run reads every partition from the first offset whose
// record timestamp is at or after
//
//	earliest spine time - longest window - one hop - MaxFuture
//
// to the end offsets listed when it starts, in parallel, and stops. Lifetime
// windows start at the log start offset. The MaxFuture slack (default 24h)
// keeps the result exact for events stamped up to MaxFuture after their
// arrival, which the decoder accepts. Records produced after the start are
// ignored, so a backfill is reproducible from its manifest. Transactional
// control records at the very end of a partition are not supported (the
// featurepipe producers do not use transactions).
//
// # Algorithm
//
// Per entity, the events (event time, offset, arrival, values) and the spine
// rows are sorted, events by the time V they become visible (ts+1, or
// max(ts+1, arrival) in ModeArrival) and rows by T. A sweep applies every
// event with V <= T (Series.Apply with aggregations.NoClock), expires tiles
// no later row can read, then reads each feature as of T. Every applied event
// has ts < T, which is the exactness rule of the aggregations package for
// NoClock replays. Entities are processed in parallel by GOMAXPROCS workers.
//
// Cost: memory is O(spine rows x features + events of the spine's entities);
// events of entities absent from the spine are decoded and dropped.
package backfill
