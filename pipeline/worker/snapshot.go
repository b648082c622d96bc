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

// snapshotDue reports whether a snapshot should be written now.
func (w *Worker) snapshotDue() bool {
	if w.o.Snapshots == nil {
		return false
	}
	select {
	case <-w.snapNow:
		return true
	default:
	}
	return time.Since(w.lastSnapTime) >= w.o.SnapshotEvery
}

// noteFeatureLogOffset remembers the highest feature-log offset acknowledged
// per partition: a snapshot's state corresponds to these offsets.
func (w *Worker) noteFeatureLogOffset(r *kgo.Record) {
	w.flMu.Lock()
	if next := r.Offset + 1; next > w.flOffsets[r.Partition] {
		w.flOffsets[r.Partition] = next
	}
	w.flMu.Unlock()
}

// writeSnapshot publishes everything committed (so that state, offsets and
// the feature log agree), then writes the state of every owned partition,
// read from one Pebble snapshot, to the snapshot store, and prunes old
// snapshots. Partitions still bootstrapping a version are left out: their
// state is incomplete.
func (w *Worker) writeSnapshot(ctx context.Context) error {
	w.lastSnapTime = time.Now()
	if err := w.publish(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	var owned []*partState
	for _, ps := range w.parts {
		if len(ps.boot) == 0 && len(ps.republish) == 0 {
			owned = append(owned, ps)
		}
	}
	w.mu.Unlock()
	if len(owned) == 0 {
		return nil
	}
	sort.Slice(owned, func(i, j int) bool {
		if owned[i].tp.topic != owned[j].tp.topic {
			return owned[i].tp.topic < owned[j].tp.topic
		}
		return owned[i].tp.partition < owned[j].tp.partition
	})
	snap := w.o.Store.DB().NewSnapshot()
	defer snap.Close()
	iterate := func(ps *partState, fn func(k, v []byte) bool) error {
		lo, hi := keys.StatePartition(ps.tp.topic, ps.tp.partition)
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
	features := map[string]string{}
	var scratch []aggregations.Series // reused by valueMaxTS across entities
	for _, ps := range owned {
		maxTS := int64(-1)
		var derr error
		if err := iterate(ps, func(_, v []byte) bool {
			var ts int64
			if ts, scratch, derr = valueMaxTS(v, scratch); derr == nil {
				maxTS = max(maxTS, ts)
			}
			return derr == nil
		}); err != nil || derr != nil {
			return fmt.Errorf("snapshot %s/%d: %w", ps.tp.topic, ps.tp.partition, firstErr(err, derr))
		}
		for _, f := range ps.plan.Features {
			features[f.ID] = f.Feature.Hash
		}
		ps := ps
		parts = append(parts, snapshot.PartitionData{Topic: ps.tp.topic, Partition: ps.tp.partition,
			NextOffset: ps.next, MaxEventTime: maxTS,
			Iter: func(yield func(k, v []byte) bool) error { return iterate(ps, yield) }})
	}
	m := snapshot.Manifest{Worker: w.name(), FeatureLogLayout: keys.FeatureLogLayout}
	for id, h := range features {
		m.Features = append(m.Features, snapshot.FeatureRef{ID: id, Hash: h})
	}
	sort.Slice(m.Features, func(i, j int) bool { return m.Features[i].ID < m.Features[j].ID })
	w.flMu.Lock()
	for p, off := range w.flOffsets {
		m.FeatureLog = append(m.FeatureLog, snapshot.LogPartition{Partition: p, Offset: off})
	}
	w.flMu.Unlock()
	sort.Slice(m.FeatureLog, func(i, j int) bool { return m.FeatureLog[i].Partition < m.FeatureLog[j].Partition })
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
