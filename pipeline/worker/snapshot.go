package worker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// RequestSnapshot asks the worker to write a snapshot as soon as possible
// (`featurepipe snapshot`). It never blocks; requests coalesce.
func (w *Worker) RequestSnapshot() {
	select {
	case w.snapNow <- struct{}{}:
	default:
	}
}

// LastSnapshot returns the manifest of the last snapshot this worker wrote,
// or nil.
func (w *Worker) LastSnapshot() *snapshot.Manifest { return w.lastSnap.Load() }

// snapshotDue reports whether a snapshot should be written now: requested
// or the period passed, and the last one written (a request made while one
// is written stays pending, and is served by the next).
func (w *Worker) snapshotDue() bool {
	if w.o.Snapshots == nil || w.snapWriting.Load() {
		return false
	}
	select {
	case <-w.snapNow:
		return true
	default:
	}
	return time.Since(w.lastSnapTime) >= w.o.SnapshotEvery
}

// startSnapshot publishes everything committed (so that state, offsets and
// the feature log agree), then captures, in the poll goroutine, which
// partitions to snapshot with their offsets and one Pebble snapshot: a
// consistent image, since only the poll goroutine commits. Reading that
// image and writing it to the snapshot store (and pruning old snapshots)
// runs in a background goroutine, so that the poll loop, and a rebalance
// waiting for it, never waits for snapshot I/O. At most one snapshot is
// written at a time: a snapshot due while one is written is skipped until
// the next period. Partitions still bootstrapping a version are left out:
// their state is incomplete. The writer runs until done or bgCtx ends; Run
// cancels and waits for it before returning (the store closes after Run).
func (w *Worker) startSnapshot(ctx, bgCtx context.Context) error {
	if !w.snapWriting.CompareAndSwap(false, true) {
		return nil
	}
	w.lastSnapTime = time.Now()
	started := false
	defer func() {
		if !started {
			w.snapWriting.Store(false)
		}
	}()
	if err := w.pub.publish(ctx, "snapshot"); err != nil {
		return err
	}
	var parts []snapPart
	w.mu.Lock()
	for _, ps := range w.parts {
		// Not repartition partitions: their marks are not in a snapshot.
		if len(ps.boot) == 0 && len(ps.republish) == 0 && !ps.restoring && ps.plan.Repartition == nil {
			parts = append(parts, snapPart{ps.tp, ps.next, ps.plan})
		}
	}
	w.mu.Unlock()
	if len(parts) == 0 {
		return nil
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].tp.topic != parts[j].tp.topic {
			return parts[i].tp.topic < parts[j].tp.topic
		}
		return parts[i].tp.partition < parts[j].tp.partition
	})
	m := snapshot.Manifest{Worker: w.name(), FeatureLogLayout: keys.FeatureLogLayout}
	features := map[string]string{}
	for _, o := range parts {
		for _, f := range o.plan.Features {
			features[f.ID] = f.Feature.Hash
		}
	}
	for id, h := range features {
		m.Features = append(m.Features, snapshot.FeatureRef{ID: id, Hash: h})
	}
	sort.Slice(m.Features, func(i, j int) bool { return m.Features[i].ID < m.Features[j].ID })
	for p, off := range w.pub.featureLogOffsets() {
		m.FeatureLog = append(m.FeatureLog, snapshot.LogPartition{Partition: p, Offset: off})
	}
	sort.Slice(m.FeatureLog, func(i, j int) bool { return m.FeatureLog[i].Partition < m.FeatureLog[j].Partition })
	snap := w.o.Store.DB().NewSnapshot()
	started = true
	w.snapWG.Add(1)
	go func() {
		defer w.snapWG.Done()
		defer w.snapWriting.Store(false)
		defer snap.Close()
		if err := w.writeSnapshot(bgCtx, snap, m, parts); err != nil && bgCtx.Err() == nil {
			// A failed snapshot loses nothing: state is in Pebble.
			w.log.Error("snapshot failed; retrying at the next period", zap.Error(err))
			w.m.Errors.WithLabelValues("snapshot").Inc()
		}
	}()
	return nil
}

// snapPart is a partition a snapshot holds, captured in the poll goroutine:
// its state is in the Pebble snapshot through offset next.
type snapPart struct {
	tp   topicPartition
	next int64
	plan *events.Plan
}

// writeSnapshot writes the state of owned, as of the Pebble snapshot snap,
// to the snapshot store under manifest m, and prunes old snapshots. Runs in
// the background writer.
func (w *Worker) writeSnapshot(ctx context.Context, snap *pebble.Snapshot, m snapshot.Manifest, owned []snapPart) error {
	iterate := func(tp topicPartition, fn func(k, v []byte) bool) error {
		lo, hi := keys.StatePartition(tp.topic, tp.partition)
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if !fn(it.Key(), it.Value()) {
				break
			}
		}
		return it.Close()
	}
	var parts []snapshot.PartitionData
	var scratch []aggregations.Series // reused by valueMaxTS across entities
	for _, o := range owned {
		tp := o.tp
		maxTS := int64(-1)
		var derr error
		if err := iterate(tp, func(_, v []byte) bool {
			var ts int64
			if ts, scratch, derr = valueMaxTS(v, scratch); derr == nil {
				maxTS = max(maxTS, ts)
			}
			return derr == nil
		}); err != nil || derr != nil {
			return fmt.Errorf("snapshot %s/%d: %w", tp.topic, tp.partition, firstErr(err, derr))
		}
		parts = append(parts, snapshot.PartitionData{Topic: tp.topic, Partition: tp.partition,
			NextOffset: o.next, MaxEventTime: maxTS,
			Iter: func(yield func(k, v []byte) bool) error { return iterate(tp, yield) }})
	}
	t0 := time.Now()
	written, err := w.o.Snapshots.Write(ctx, m, parts)
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	w.lastSnap.Store(written)
	w.log.Info("snapshot written", zap.String("id", written.ID), zap.Int("partitions", len(parts)),
		zap.Duration("took", time.Since(t0)))
	if deleted, err := w.o.Snapshots.Prune(ctx); err != nil {
		w.log.Warn("prune snapshots", zap.Error(err))
	} else if len(deleted) > 0 {
		w.log.Info("old snapshots deleted", zap.Strings("ids", deleted))
	}
	return nil
}

// valueMaxTS is the highest event time held by a stored entity value (-1 if
// none), over every series it holds, including those of features no longer
// in the plan: a snapshot's MaxEventTime may overstate, never understate.
// The series are decoded into scratch, grown as needed and returned for
// reuse (tiles included), so a scan allocates only for its largest entity.
func valueMaxTS(v []byte, scratch []aggregations.Series) (int64, []aggregations.Series, error) {
	n := 0
	err := entity.Decode(v, func([]byte) *aggregations.Series {
		if n == len(scratch) {
			scratch = append(scratch, aggregations.Series{})
		}
		n++
		return &scratch[n-1]
	})
	if err != nil {
		return 0, scratch, err
	}
	m := int64(-1)
	for i := range scratch[:n] {
		m = max(m, seriesMaxTS(&scratch[i]))
	}
	return m, scratch, nil
}

// seriesMaxTS is the highest event time held by a series (-1 if empty).
func seriesMaxTS(s *aggregations.Series) int64 {
	m := int64(-1)
	if !s.Base.Empty() {
		m = s.Base.LastTS
	}
	for _, t := range s.Tiles {
		if !t.IR.Empty() {
			m = max(m, t.IR.LastTS)
		}
		for _, p := range t.Pending {
			m = max(m, p.TS)
		}
	}
	return m
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// restoreResult is a finished background restore.
type restoreResult struct {
	tp  topicPartition
	err error
}

// startRestore restores partition tp from its newest snapshot in a
// background goroutine (one per partition at a time), so that neither the
// group's rebalance (franz-go calls adjustOffsets inside it) nor the poll
// loop waits for snapshot I/O. The partition stays paused meanwhile;
// finishRestores resumes it. Exactly once: restore commits the state and
// the offsets it covers in one batch, and nothing of the partition is
// applied before that batch is committed. w.mu held.
func (w *Worker) startRestore(plan *events.Plan, tp topicPartition) {
	if w.restoring[tp] {
		return // the restore in flight serves this assignment too
	}
	w.restoring[tp] = true
	ctx := w.bgCtx
	w.restoreWG.Add(1)
	go func() {
		defer w.restoreWG.Done()
		_, _, err := w.restore(ctx, plan, tp)
		w.mu.Lock()
		delete(w.restoring, tp)
		w.restoreDone = append(w.restoreDone, restoreResult{tp, err})
		w.mu.Unlock()
	}()
}

// finishRestores loads again, from Pebble, every owned partition whose
// background restore finished (with a snapshot's state, or none found: then
// it is replayed from the start), sets its fetch offset and resumes it. Poll
// goroutine, before AllowRebalance (franz-go's rule for SetOffsets). A
// failed restore is returned: restart the worker.
func (w *Worker) finishRestores(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	done := w.restoreDone
	w.restoreDone = nil
	for _, r := range done {
		if r.err != nil {
			if w.bgCtx.Err() != nil {
				return nil // Run is ending
			}
			return fmt.Errorf("restore %s/%d from a snapshot: %w", r.tp.topic, r.tp.partition, r.err)
		}
		old := w.parts[r.tp]
		if old == nil || !old.restoring {
			continue // revoked since (the restored state stays in Pebble)
		}
		ps, start, err := w.loadPartition(ctx, old.plan, r.tp, false)
		if err != nil {
			return err
		}
		ps.setQuietUntil(old.quietUntil)
		w.parts[r.tp] = ps
		if eo := start.EpochOffset(); eo.Offset >= 0 {
			w.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.tp.topic: {r.tp.partition: eo}})
		}
		w.cl.ResumeFetchPartitions(map[string][]int32{r.tp.topic: {r.tp.partition}})
		w.log.Info("partition resumed after its restore", zap.String("topic", r.tp.topic), zap.Int32("partition", r.tp.partition),
			zap.Int64("applied_through", ps.applyFrom), zap.Int64("published_through", ps.published))
	}
	return nil
}

// restore loads the newest valid snapshot of a partition this worker has no
// state for: its state keys, the offsets it covers (applied and published:
// the previous owner published everything the snapshot holds) and which
// feature versions it holds, all in one batch. Versions the snapshot lacks,
// or holds with another definition, are then bootstrapped like new ones.
// Corrupt snapshots are skipped for older ones. ok=false: no snapshot.
// Cost: one read of the partition's SST, held in one batch.
func (w *Worker) restore(ctx context.Context, plan *events.Plan, tp topicPartition) (next int64, ok bool, err error) {
	want := snapshot.TopicPartition{Topic: tp.topic, Partition: tp.partition}
	hashes := map[string]string{}
	for _, f := range plan.Features {
		hashes[f.ID] = f.Feature.Hash
	}
	usable := func(m *snapshot.Manifest) []string {
		var ids []string
		for _, fr := range m.Features {
			if h, ok := hashes[fr.ID]; ok && h == fr.Hash {
				ids = append(ids, fr.ID)
			}
		}
		return ids
	}
	choices, problems, err := w.o.Snapshots.Newest(ctx, []snapshot.TopicPartition{want},
		func(m *snapshot.Manifest, _ snapshot.SourcePartition) bool { return len(usable(m)) > 0 })
	if err != nil {
		return 0, false, fmt.Errorf("choose a snapshot of %s/%d: %w", tp.topic, tp.partition, err)
	}
	for _, p := range problems {
		w.log.Warn("corrupt or partial snapshot skipped", zap.Error(p))
	}
	c, found := choices[want]
	if !found {
		return 0, false, nil
	}
	b := w.o.Store.NewBatch()
	n := 0
	if err := w.o.Snapshots.Read(ctx, c.Manifest, c.Source.File, func(k, v []byte) error {
		n++
		return b.Set(k, v, nil)
	}); err != nil {
		b.Close()
		w.log.Warn("snapshot unreadable; replaying the partition instead", zap.String("snapshot", c.Manifest.ID), zap.Error(err))
		return 0, false, nil
	}
	next = c.Source.NextOffset
	for _, id := range usable(c.Manifest) {
		_ = b.Set(keys.FeatureKnown(tp.topic, tp.partition, id), keys.PutU64(next), nil)
	}
	_ = b.Set(keys.Offset(tp.topic, tp.partition), keys.PutU64(next), nil)
	_ = b.Set(keys.Published(tp.topic, tp.partition), keys.PutU64(next), nil)
	if l := c.Manifest.FeatureLogLayout; l > 0 {
		// Else absent: loadFeatures republishes the tiles (older layout).
		_ = b.Set(keys.PublishedLayout(tp.topic, tp.partition), keys.PutU64(int64(l)), nil)
	}
	if err := w.o.Store.Commit(b); err != nil {
		return 0, false, err
	}
	w.log.Info("partition restored from snapshot", zap.String("topic", tp.topic), zap.Int32("partition", tp.partition),
		zap.String("snapshot", c.Manifest.ID), zap.Int64("next_offset", next), zap.Int("entities", n))
	return next, true, nil
}
