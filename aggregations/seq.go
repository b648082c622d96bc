package aggregations

// SeqOffsetBits is the number of low bits of a Seq built by Seq that hold
// the Kafka offset; the source partition is in the bits above.
const SeqOffsetBits = 44

// Seq is the tie-breaking sequence of the record at offset of source
// partition partition: partition<<SeqOffsetBits | offset. Ties on event
// time for Last are won by the larger Seq, so by the later offset within a
// partition and, across partitions (an entity whose events producers put in
// several partitions), by the higher partition. The workers, the lookup
// merge and the backfill all order events with this one function, so a tie
// resolves the same way online and offline.
//
// Exact for offsets below 2^44 (17.6 trillion records per partition) and
// partitions below 2^19; beyond, the orders of two partitions interleave
// but stay the same everywhere (the value depends only on its arguments).
// For partition 0 Seq is the offset itself. Negative arguments are not
// Kafka offsets or partitions; they give a negative Seq.
func Seq(partition int32, offset int64) int64 {
	return int64(partition)<<SeqOffsetBits | offset
}
