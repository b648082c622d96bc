package worker

// Re-keying. A feature whose entity is not the one its source topic's Kafka
// key identifies is computed from the repartition topic
// featurepipe.repartition.<source>.<entity> (config.Repartition), which
// workers write and read; this file is the only code that builds or parses
// its records.
//
// Producing side (a source partition's worker): every valid source record
// (one the source's plan accepts; a rejected one is dead-lettered once, at
// the source) is produced to each repartition topic of the source, keyed by
// the re-keyed entity's key (keys.EntityKey, the one key-building function),
// partitioned like every producer's keyed record (murmur2: franz-go's
// default, Kafka's Java client's), with its original value and timestamp
// and its source partition and offset in headers. The records of a poll
// are acknowledged (ProduceSync) before the source offset is committed in
// Pebble, so a crash re-produces, never loses: the repartition topic is
// at-least-once.
//
// Consuming side (a repartition partition's worker, same consumer group):
// exactly once on top of that. Per (repartition partition, source
// partition) it keeps a high-water mark, the highest source offset applied,
// in the same Pebble batch as the state it produced, and skips a record at
// or below it. Why this loses nothing: every writer of a source partition's
// records (its current owner, a restarted one, or a zombie that lost it in
// a rebalance and still flushes) produces a contiguous run of its offsets
// from the committed offset it started at, in order (franz-go's idempotent
// producer keeps a partition's records in order across retries), and
// everything below a committed offset was acknowledged, so is in the log,
// before any later writer starts. So the first copy of offset o in a
// repartition partition arrives before any copy of a later offset o' > o
// from the same writer, and a writer that wrote o' started at or before o:
// no record is skipped before its first copy was applied. Copies are
// identical (same value, same key, so same partition): which one is
// applied does not matter. Lookups merge the repartition partitions' tiles
// like any partitions' (the feature-log key names the repartition
// partition), and the first-seen marker of a re-keyed entity is kept per
// repartition partition as it is per source partition.

import (
	"fmt"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
)

// repartitionRecord is the re-keyed copy of source record r for
// repartition i of its plan, keyed by key. It shares r's value.
func repartitionRecord(ps *partState, r *kgo.Record, i int, key string) *kgo.Record {
	return repartitionRecordFor(ps.plan.Rekeys[i].Topic, r, key)
}

// repartitionRecordFor is the re-keyed copy of r for topic.
func repartitionRecordFor(topic string, r *kgo.Record, key string) *kgo.Record {
	return &kgo.Record{
		Topic:     topic,
		Key:       []byte(key),
		Value:     r.Value,
		Timestamp: r.Timestamp, // arrival time, for point-in-time=arrival backfills
		Headers: []kgo.RecordHeader{
			{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
			{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
		},
	}
}

// origin returns the source partition and offset a repartition record
// carries.
func origin(r *kgo.Record) (partition int32, offset int64, err error) {
	var hasP, hasO bool
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderSourcePartition:
			p, perr := strconv.ParseInt(string(h.Value), 10, 32)
			if perr != nil || p < 0 {
				return 0, 0, fmt.Errorf("header %s = %q is not a partition", h.Key, h.Value)
			}
			partition, hasP = int32(p), true
		case HeaderSourceOffset:
			o, oerr := strconv.ParseInt(string(h.Value), 10, 64)
			if oerr != nil || o < 0 {
				return 0, 0, fmt.Errorf("header %s = %q is not an offset", h.Key, h.Value)
			}
			offset, hasO = o, true
		}
	}
	if !hasP || !hasO {
		return 0, 0, fmt.Errorf("repartition record without its %s and %s headers", HeaderSourcePartition, HeaderSourceOffset)
	}
	return partition, offset, nil
}

// marks are the high-water marks of one repartition partition (or of one
// bootstrap replaying it), by source partition, and which changed since
// the last commit.
type marks struct {
	hwm   map[int32]int64
	dirty map[int32]struct{}
}

func newMarks() *marks { return &marks{hwm: map[int32]int64{}, dirty: map[int32]struct{}{}} }

// covers reports whether offset off of source partition p is at or below
// its mark: a duplicate admit refuses. ahead, when not nil, holds marks
// raised past m's (a caller reading ahead without raising m's, as
// Worker.prefetch does); they take precedence.
func (m *marks) covers(p int32, off int64, ahead map[int32]int64) bool {
	h, ok := ahead[p]
	if !ok {
		h, ok = m.hwm[p]
	}
	return ok && off <= h
}

// admit reports whether the record from source partition p at offset off is
// new (above the mark), and if so raises the mark.
func (m *marks) admit(p int32, off int64) bool {
	if m.covers(p, off, nil) {
		return false
	}
	m.hwm[p] = off
	m.dirty[p] = struct{}{}
	return true
}

// stage writes the changed marks of scope into b and forgets that they
// changed (the batch is committed or the worker stops).
func (m *marks) stage(b *pebble.Batch, tp topicPartition, scope string) error {
	for p := range m.dirty {
		if err := b.Set(keys.RepartitionMark(tp.topic, tp.partition, scope, p), keys.PutU64(m.hwm[p]), nil); err != nil {
			return fmt.Errorf("stage repartition mark of %s/%d: %w", tp.topic, tp.partition, err)
		}
		delete(m.dirty, p)
	}
	return nil
}

// loadMarks reads the committed marks of scope of a repartition partition.
func loadMarks(st *state.Store, tp topicPartition, scope string) (*marks, error) {
	m := newMarks()
	lo, hi := keys.RepartitionMarks(tp.topic, tp.partition, scope)
	it, err := st.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("read repartition marks of %s/%d: %w", tp.topic, tp.partition, err)
	}
	for it.First(); it.Valid(); it.Next() {
		p, err := keys.RepartitionMarkSource(it.Key())
		if err == nil {
			var off int64
			if off, err = keys.U64(it.Value()); err == nil {
				m.hwm[p] = off
				continue
			}
		}
		it.Close()
		return nil, fmt.Errorf("repartition marks of %s/%d: %w", tp.topic, tp.partition, err)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read repartition marks of %s/%d: %w", tp.topic, tp.partition, err)
	}
	return m, nil
}

// deleteMarks deletes the marks of scope (a finished bootstrap's) in b.
func deleteMarks(b *pebble.Batch, tp topicPartition, scope string) {
	lo, hi := keys.RepartitionMarks(tp.topic, tp.partition, scope)
	_ = b.DeleteRange(lo, hi, nil)
}

// History of a new re-keying. When a source partition that already has
// state gains a repartition topic (a feature of a new entity is added to
// the feature file), the records it applied before are re-keyed too: the
// partition is fetched again from offset 0, and records below its applied
// offset only produce their copies for the new repartition topics (their
// state is in Pebble already), before any live record's copy, so each
// source partition's copies stay one contiguous run in offset order, as the
// high-water marks need. Progress is committed with the partition's batch
// under keys.Bootstrap(topic, partition, rekeyID(repartition topic)); a
// re-keying the partition knows is recorded under keys.FeatureKnown with
// the same id. A partition restored from a snapshot (which does not record
// re-keyings) re-keys its history again: the consuming side skips what it
// applied already.

// rekeyHistory is the history [next, end) of a source partition still to
// re-key to Rekeys[idx].
type rekeyHistory struct {
	idx       int
	next, end int64
	staged    int64
}

// rekeyID is the reserved id of a re-keying among a partition's feature
// ids (feature ids are validated names, none starts with a NUL byte).
func rekeyID(topic string) string { return "\x00rekey:" + topic }

// loadRekeyHistory finds the re-keyings of ps new to its state and the
// unfinished histories of earlier ones, recording the new ones as known.
func (w *Worker) loadRekeyHistory(ps *partState, applied int64, hasApplied bool) error {
	if len(ps.plan.Rekeys) == 0 {
		return nil
	}
	tp := ps.tp
	b := w.o.Store.NewBatch()
	for i, r := range ps.plan.Rekeys {
		next, end, _, booting, err := w.history(b, tp, rekeyID(r.Topic), applied, hasApplied)
		if err != nil {
			b.Close()
			return err
		}
		if booting {
			ps.rekeyHist = append(ps.rekeyHist, &rekeyHistory{idx: i, next: next, end: end, staged: next})
		}
	}
	if len(ps.rekeyHist) > 0 {
		w.log.Info("re-keying the partition's history to new repartition topics", zap.String("topic", tp.topic), zap.Int32("partition", tp.partition))
	}
	return w.o.Store.Commit(b)
}

// rekeyHistoryStart is the lowest offset whose history is still to re-key.
func (ps *partState) rekeyHistoryStart() (int64, bool) {
	var lo int64
	ok := false
	for _, h := range ps.rekeyHist {
		if !ok || h.next < lo {
			lo, ok = h.next, true
		}
	}
	return lo, ok
}

// rekeyHistoryRecord produces the copies of replayed record r (decoded in
// ps.dec unless rejected) to the repartition topics whose history holds it.
func rekeyHistoryRecord(ps *partState, r *kgo.Record, rejected bool) {
	for _, h := range ps.rekeyHist {
		if r.Offset < h.staged || r.Offset >= h.end {
			continue
		}
		h.staged = r.Offset + 1
		if !rejected {
			ps.repart = append(ps.repart, repartitionRecord(ps, r, h.idx, ps.dec.Rekeyed[h.idx]))
		}
	}
}

// stageRekeyHistory writes the histories' progress into b.
func stageRekeyHistory(b *pebble.Batch, ps *partState) {
	for _, h := range ps.rekeyHist {
		if h.staged == h.next {
			continue
		}
		id := rekeyID(ps.plan.Rekeys[h.idx].Topic)
		if h.staged >= h.end {
			_ = b.Delete(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), nil)
		} else {
			_ = b.Set(keys.Bootstrap(ps.tp.topic, ps.tp.partition, id), keys.PutRange(h.staged, h.end), nil)
		}
	}
}

// commitRekeyHistory records committed progress, dropping finished histories.
func commitRekeyHistory(ps *partState) {
	kept := ps.rekeyHist[:0]
	for _, h := range ps.rekeyHist {
		h.next = h.staged
		if h.next < h.end {
			kept = append(kept, h)
		}
	}
	ps.rekeyHist = kept
}
