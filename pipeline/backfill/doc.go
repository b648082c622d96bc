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
// # Snapshots
//
// With Options.Snapshots (`backfill --snapshots DIR`) a partition can start
// from the workers' state instead of from its replay offset, so a backfill
// reaches further back than the topics' retention. For each source
// partition, the newest snapshot passing SnapshotUsable is chosen: its
// events are all before the earliest spine time T_min and it was taken at or
// before T_min (every event in it had arrived by any row's T, and the
// worker's clock was at most T_min, so for every finite window
// Horizon(CreatedAt) <= Start(T_min) is also checked: no tile a row reads
// was expired; lifetime windows keep old tiles folded in Base); it holds
// every requested feature of the topic with the same definition hash; and
// its next offset lies between the partition's log start and end offsets.
// The state of the spine's entities is decoded from it (requested features
// only) and seeds the sweep, and the partition is replayed from the
// snapshot's next offset (or the usual start, when later) to the end offset.
//
// This is exact: a snapshot tile may hold pending events (ts >= the
// worker's clock when it applied them), but every event of the snapshot has
// ts < T_min <= T, and Series.Read folds pending events with ts < T, so a
// read at any row's T folds all of them, exactly like the events replayed
// after them. Partitions without a usable snapshot are replayed as usual;
// corrupt snapshots are logged and skipped for older ones (or the replay).
// The manifest records each partition's snapshot (OffsetRange.Snapshot).
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
//
// # Shards
//
// With Options.Shard = i/N (`backfill --shard i/N`) Run computes one of N
// shards; the N runs may go at once on N machines (deploy/kubernetes/
// backfill-job.yaml: an Indexed Job). Every shard reads the whole spine.
//
//   - Rows: shard i owns the spine rows whose entity key k has
//     murmur2(k) mod P mod N == i, murmur2 being the canonical partitioner
//     (Kafka's Java client, franz-go's default; pipeline/worker/canonical.go)
//     and P the partition count of the first source topic, by name, that is
//     not re-keyed (N if there is none).
//   - Partitions: of every source topic that is not re-keyed and has P
//     partitions, shard i replays the partitions p with p mod N == i: exactly
//     those where the producers put its rows' events. A re-keyed source (its
//     Kafka key is not the spine's entity key) or one with another partition
//     count is replayed in full by every shard, which keeps its own keys'
//     events: correct, N times the reading.
//   - Guard: an entity whose events a producer put outside the key's
//     canonical partition (another partitioner, e.g. librdkafka's CRC32)
//     would miss them in its shard. Every partition of a partition-sharded
//     topic is read by exactly one shard, which fails (ErrNotCanonical) on a
//     valid event of a spine entity another shard owns, so a sharded run
//     either equals the single-process run or fails; run such a backfill
//     without Shard.
//   - Planning: every shard computes the replay start offsets and chooses
//     snapshots from the whole spine's earliest time, as the single-process
//     run does, so each partition is read from the same offset.
//   - Output: Out is the dataset's directory. Shard i writes
//     Out/part-<i>-of-<N>.parquet (its rows in spine order; Parquet only) and
//     its manifest Out/_shards/part-<i>-of-<N>.json, then reads the other
//     shards' manifests. The shard that finds all N, and wins the exclusive
//     creation of Out/_shards/merge.claim, merges them into the one dataset
//     manifest ManifestPath(Out) (rows, sources and events summed, statistics
//     merged, the files in Manifest.Shards) and registers the dataset once.
//     No shard waits for another. A failed merge removes the claim, so a
//     retried shard merges again; a merging shard killed before writing the
//     manifest leaves the claim, and MergeShards (`backfill --merge`)
//     finishes the dataset. An Out that already has its manifest is
//     refused: give each run a new directory.
//
// The union of the shards' rows is exactly the single-process run's, cell
// for cell (TestShardedRunMatchesSingleProcess).
//
// # Catalog
//
// After writing the output, Run registers it in the catalog (the feature
// file's registry topic, registry.RegisterDataset) as the next version of
// the dataset Options.Dataset names, and the manifest records that
// name@version. If the registration fails, the output is removed and Run
// fails: every data set Run leaves behind is in the catalog.
package backfill
