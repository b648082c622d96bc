package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// A feature version added to a feature file whose partitions already have
// state is bootstrapped: the partition's history before the offset where the
// live stream started applying it is replayed into it alone, while the live
// stream keeps every version (old and new) current. Bootstrap progress is
// committed in the same Pebble batch as the state it produced, so it is
// exactly once like everything else. When a partition's bootstrap ends,
// every tile of the version is republished and the registry marks the
// partition ready; until every partition is ready, lookups report the
// version as WARMING_UP.

// bootFeature is one feature version being bootstrapped in a partition.
type bootFeature struct {
	idx       int   // index into plan.Features
	next, end int64 // history [next, end) still to replay
	staged    int64 // next once the staged batch commits
	// marks, in a repartition partition, are the bootstrap's own
	// high-water marks (scope: the feature id), committed with its
	// progress: history holds the duplicates the live stream skipped, and
	// the bootstrap skips the same ones.
	marks *marks
}

// history returns the part of tp's history that id (a feature version or a
// re-keying) still has to read. An id new to the partition's state is
// recorded as known in b (fresh) and, when the partition has applied
// records, has its whole history [0, applied) to read, recorded as its
// bootstrap range; a known id has the range an unfinished bootstrap left.
// booting=false: nothing to read.
func (w *Worker) history(b *pebble.Batch, tp topicPartition, id string, applied int64, hasApplied bool) (next, end int64, fresh, booting bool, err error) {
	_, known, err := w.o.Store.GetOffset(keys.FeatureKnown(tp.topic, tp.partition, id))
	if err != nil {
		return 0, 0, false, false, err
	}
	if !known {
		_ = b.Set(keys.FeatureKnown(tp.topic, tp.partition, id), keys.PutU64(applied), nil)
		if !hasApplied || applied == 0 {
			return 0, 0, true, false, nil
		}
		_ = b.Set(keys.Bootstrap(tp.topic, tp.partition, id), keys.PutRange(0, applied), nil)
		return 0, applied, true, true, nil
	}
	val, found, err := w.o.Store.Get(nil, keys.Bootstrap(tp.topic, tp.partition, id))
	if err != nil || !found {
		return 0, 0, false, false, err
	}
	next, end, err = keys.Range(val)
	return next, end, false, err == nil, err
}

// loadFeatures reads which feature versions the partition's state knows,
// starts bootstraps for the new ones and resumes unfinished ones. applied
// is the partition's committed offset (hasApplied false: no state yet, the
// whole partition is replayed for every version).
//
// A partition with state whose tiles were published under an older
// feature-log key layout (keys.PublishedLayout below keys.FeatureLogLayout:
// readers skip those records) has every known version marked for
// republishing, once.
func (w *Worker) loadFeatures(ps *partState, applied int64, hasApplied bool) error {
	tp := ps.tp
	layout, hasLayout, err := w.o.Store.GetOffset(keys.PublishedLayout(tp.topic, tp.partition))
	if err != nil {
		return err
	}
	upgrade := hasApplied && (!hasLayout || layout < keys.FeatureLogLayout)
	if upgrade {
		w.log.Warn("the partition's tiles were published under an older feature-log key layout: republishing them all",
			zap.String("topic", tp.topic), zap.Int32("partition", tp.partition))
	}
	b := w.o.Store.NewBatch()
	for i := range ps.plan.Features {
		id := ps.plan.Features[i].ID
		next, end, fresh, booting, err := w.history(b, tp, id, applied, hasApplied)
		if err != nil {
			b.Close()
			return err
		}
		if booting {
			bf := &bootFeature{idx: i, next: next, end: end, staged: next}
			switch {
			case ps.plan.Repartition == nil:
			case fresh:
				deleteMarks(b, tp, id) // of an earlier bootstrap of this id, if any
				bf.marks = newMarks()
			default:
				if bf.marks, err = loadMarks(w.o.Store, tp, id); err != nil {
					b.Close()
					return err
				}
			}
			ps.boot = append(ps.boot, bf)
		}
		if fresh {
			continue // a new version republishes when its bootstrap ends
		}
		if _, found, err := w.o.Store.Get(nil, keys.Republish(tp.topic, tp.partition, id)); err != nil {
			b.Close()
			return err
		} else if found || (upgrade && !booting) { // a bootstrap republishes when it ends
			_ = b.Set(keys.Republish(tp.topic, tp.partition, id), nil, nil)
			ps.republish = append(ps.republish, i)
		}
	}
	_ = b.Set(keys.PublishedLayout(tp.topic, tp.partition), keys.PutU64(keys.FeatureLogLayout), nil)
	if len(ps.boot) > 0 || len(ps.republish) > 0 {
		w.bootChanged.Store(true)
	}
	return w.o.Store.Commit(b)
}

// bootReader reads the history of the bootstrapping partitions in the
// background, one goroutine per source topic, with kafka.ReadBatches
// (read-committed, like the live stream). A partition's history ends by
// read position, not by a record at its end offset minus one: that offset
// may hold a transaction marker, a record of an aborted transaction or
// nothing at all (compacted away). The poll goroutine applies what it sends
// (applyBoot).
type bootReader struct {
	msgs   chan bootMsg
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// bootMsg is one batch of a partition's history, its end, or a read error.
type bootMsg struct {
	topic     string
	partition int32
	recs      []*kgo.Record
	// done: the partition's history is read through next (at least the
	// end of every bootstrap of the partition); every batch before it was
	// sent.
	done bool
	next int64
	err  error
}

// stop ends the reader's goroutines and waits for them.
func (r *bootReader) stop() {
	r.cancel()
	r.wg.Wait()
}

// refreshBootClient (re)starts the reader of history for the owned
// partitions that bootstrap, and announces their warming-up status.
func (w *Worker) refreshBootClient(ctx context.Context) error {
	if !w.bootChanged.Swap(false) {
		return nil
	}
	if w.bootRd != nil {
		w.bootRd.stop()
		w.bootRd = nil
	}
	ranges := map[string]kafka.Ranges{}
	var status []*kgo.Record
	w.mu.Lock()
	for tp, ps := range w.parts {
		if len(ps.boot) == 0 {
			continue
		}
		from, end := ps.boot[0].next, ps.boot[0].end
		for _, bf := range ps.boot {
			from, end = min(from, bf.next), max(end, bf.end)
			status = w.appendStatus(status, ps, bf.idx, registry.StateWarmingUp, time.Now(), bf.next, bf.end)
		}
		if ranges[tp.topic] == nil {
			ranges[tp.topic] = kafka.Ranges{}
		}
		ranges[tp.topic][tp.partition] = kafka.Range{From: from, End: end}
	}
	w.mu.Unlock()
	if len(status) > 0 {
		if err := w.cl.ProduceSync(ctx, status...).FirstErr(); err != nil {
			return fmt.Errorf("announce bootstraps in the registry: %w", err)
		}
	}
	if len(ranges) == 0 {
		return nil
	}
	rctx, cancel := context.WithCancel(w.bgCtx)
	r := &bootReader{msgs: make(chan bootMsg, 4), cancel: cancel}
	send := func(m bootMsg) error {
		select {
		case r.msgs <- m:
			return nil
		case <-rctx.Done():
			return rctx.Err()
		}
	}
	for topic, rs := range ranges {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			next, err := kafka.ReadBatches(rctx, w.cl, topic, rs, func(p int32, recs []*kgo.Record) error {
				return send(bootMsg{topic: topic, partition: p, recs: recs})
			})
			if err != nil {
				if rctx.Err() == nil {
					_ = send(bootMsg{topic: topic, err: fmt.Errorf("read history of %s to bootstrap new feature versions: %w", topic, err)})
				}
				return
			}
			for p, off := range next {
				if send(bootMsg{topic: topic, partition: p, done: true, next: off}) != nil {
					return
				}
			}
		}()
	}
	w.bootRd = r
	w.log.Info("bootstrapping new feature versions from history", zap.Any("ranges", ranges))
	return nil
}

// applyBoot applies the history the boot reader sent (waiting at most a
// moment for it, taking up to about MaxPollRecords records) to the new
// feature versions only. It returns the partitions whose bootstrap
// progressed; their progress is staged for the batch commit.
func (w *Worker) applyBoot(ctx context.Context, now int64) ([]*partState, error) {
	if w.bootRd == nil {
		return nil, nil
	}
	wait := time.NewTimer(5 * time.Millisecond)
	defer wait.Stop()
	var progressed []*partState
	moved := map[*partState]bool{}
	n := 0
	for n < w.o.MaxPollRecords {
		var m bootMsg
		if n == 0 && len(moved) == 0 {
			select {
			case m = <-w.bootRd.msgs:
			case <-wait.C:
				return nil, nil
			case <-ctx.Done():
				return nil, nil
			}
		} else {
			select {
			case m = <-w.bootRd.msgs:
			default:
				return progressed, nil
			}
		}
		if m.err != nil {
			return nil, m.err
		}
		n += len(m.recs)
		ps := w.partition(m.topic, m.partition)
		if ps == nil || len(ps.boot) == 0 {
			continue
		}
		did := false
		if m.done {
			did = w.endBoot(ps, m.next)
		} else {
			var err error
			if did, err = w.applyBootRecords(ps, m.recs, now); err != nil {
				return nil, err
			}
		}
		if did && !moved[ps] {
			moved[ps] = true
			progressed = append(progressed, ps)
		}
	}
	return progressed, nil
}

// applyBootRecords applies history records of ps to the bootstrapping
// versions whose range holds them, reporting whether any moved. An error
// (loading an entity's state) makes going on unsafe.
func (w *Worker) applyBootRecords(ps *partState, recs []*kgo.Record, now int64) (bool, error) {
	moved := false
	// History is not live: its tiles' feature-log records carry their
	// publication time, not these records' (see markDirty).
	ps.recTS = 0
	for _, r := range recs {
		decoded, rejected := false, false
		var es *entityState // the record's entity, loaded once for all versions
		seq := aggregations.Seq(ps.tp.partition, r.Offset)
		var sp int32
		var soff int64
		var originErr error
		if ps.plan.Repartition != nil {
			sp, soff, originErr = origin(r)
			seq = aggregations.Seq(sp, soff)
		}
		for _, bf := range ps.boot {
			if r.Offset < bf.staged || r.Offset >= bf.end {
				continue
			}
			bf.staged = r.Offset + 1
			moved = true
			if originErr != nil {
				continue // dead-lettered by the live stream
			}
			if bf.marks != nil && !bf.marks.admit(sp, soff) {
				continue // a duplicate the live stream skipped too
			}
			if !decoded {
				decoded = true
				rej := w.decoder.Decode(ps.plan, r.Key, r.Value, now, &ps.dec)
				if rej != nil && rej.Temporary {
					return moved, fmt.Errorf("decode %s/%d offset %d: %w", ps.tp.topic, ps.tp.partition, r.Offset, rej)
				}
				if rejected = rej != nil; !rejected {
					var err error
					if es, err = w.entity(ps, ps.dec.Key); err != nil {
						return moved, err
					}
				}
			}
			if rejected {
				continue // dead-lettered by the live stream when it first arrived
			}
			w.applyFeature(ps, es, bf.idx, seq, now)
		}
	}
	return moved, nil
}

// endBoot ends, at read position next, the bootstraps of ps whose range it
// covers: every record of their history below it was applied (or was not
// a committed data record), reporting whether any ended.
func (w *Worker) endBoot(ps *partState, next int64) bool {
	moved := false
	for _, bf := range ps.boot {
		if bf.staged < bf.end && next >= bf.end {
			bf.staged = bf.end
			moved = true
		}
	}
	return moved
}

// finishBoots republishes every tile of the versions whose bootstrap ended,
// then marks those partitions ready in the registry. A partition whose state
// is still below its published mark republishes once it has reached it
// (publishedmark.go): its values are older than the feature log's until then.
func (w *Worker) finishBoots(ctx context.Context) error {
	w.mu.Lock()
	var todo []*partState
	for _, ps := range w.parts {
		if len(ps.republish) > 0 && ps.next >= ps.quietUntil {
			todo = append(todo, ps)
		}
	}
	w.mu.Unlock()
	for _, ps := range todo {
		if err := w.republishAll(ctx, ps); err != nil {
			return err
		}
	}
	return nil
}

// republishAll publishes every tile of the partition's versions marked for
// republishing, reading the committed state, then marks them ready.
func (w *Worker) republishAll(ctx context.Context, ps *partState) error {
	// Publish the cache first so that Pebble and the feature log agree.
	if err := w.pub.publish(ctx, "republish"); err != nil {
		return err
	}
	tp, plan := ps.tp, ps.plan
	lo, hi := keys.StatePartition(tp.topic, tp.partition)
	it, err := w.o.Store.DB().NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("scan state of %s/%d: %w", tp.topic, tp.partition, err)
	}
	topic := w.o.Config.Kafka.FeatureLogTopic
	n := 0
	for it.First(); it.Valid(); it.Next() {
		key, err := keys.EntityKeyFromState(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		es := &entityState{key: key}
		if err := decodeEntity(it.Value(), plan, es); err != nil {
			it.Close()
			return err
		}
		emit := func(feature int, start int64) {
			r := &kgo.Record{Topic: topic}
			_, r.Key, r.Value = appendRecord(nil, ps, es, feature, start)
			w.pub.produce(ctx, r)
			n++
		}
		for _, i := range ps.republish {
			s := &es.series[i]
			if _, ok := s.Tile(aggregations.BaseStart); ok {
				emit(i, aggregations.BaseStart)
			}
			for _, t := range s.Tiles {
				emit(i, t.Start)
			}
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scan state of %s/%d: %w", tp.topic, tp.partition, err)
	}
	if err := w.pub.flush(ctx, n); err != nil {
		return err
	}
	var status []*kgo.Record
	b := w.o.Store.NewBatch()
	for _, i := range ps.republish {
		_ = b.Delete(keys.Republish(tp.topic, tp.partition, plan.Features[i].ID), nil)
		status = w.appendStatus(status, ps, i, registry.StateReady, time.Now(), 0, 0)
	}
	if err := w.cl.ProduceSync(ctx, status...).FirstErr(); err != nil {
		b.Close()
		return fmt.Errorf("mark bootstrapped versions ready in the registry: %w", err)
	}
	if err := w.o.Store.Commit(b); err != nil {
		return err
	}
	w.log.Info("feature versions bootstrapped and ready", zap.String("topic", tp.topic), zap.Int32("partition", tp.partition),
		zap.Int("tiles_republished", n))
	ps.republish = ps.republish[:0]
	return nil
}

// commitBoot records committed bootstrap progress in memory: finished
// versions move to the republish list.
func (w *Worker) commitBoot(ps *partState) {
	if len(ps.boot) == 0 {
		return
	}
	kept := ps.boot[:0]
	for _, bf := range ps.boot {
		bf.next = bf.staged
		if bf.next >= bf.end {
			ps.republish = append(ps.republish, bf.idx)
			continue
		}
		kept = append(kept, bf)
	}
	if len(kept) != len(ps.boot) {
		w.bootChanged.Store(true)
	}
	ps.boot = kept
}
