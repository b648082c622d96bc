package worker

// Partition assignment: the group's callbacks take partitions on (adjustOffsets,
// loading their offsets and feature versions from Pebble) and hand them over
// (onRevoked publishes their pending tiles first; onLost drops them).

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// adjustOffsets runs when partitions are assigned: it replaces the group's
// committed offsets by the ones in Pebble, keeping the committed ones as the
// partitions' published marks (publishedmark.go).
func (w *Worker) adjustOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for topic, parts := range assigned {
		plan := w.plans[topic]
		for p := range parts {
			ps, start, err := w.loadPartition(ctx, plan, topicPartition{topic, p}, true)
			if err != nil {
				w.log.Error("read partition offsets", zap.Error(err))
				return nil, err
			}
			ps.setQuietUntil(committedMark(parts[p]))
			w.parts[ps.tp] = ps
			parts[p] = start
			if ps.restoring {
				pause[topic] = append(pause[topic], p)
				w.log.Info("partition assigned; restoring it from a snapshot", zap.String("topic", topic), zap.Int32("partition", p))
				continue
			}
			// Paused if it was restoring when last revoked.
			resume[topic] = append(resume[topic], p)
			w.log.Info("partition assigned", zap.String("topic", topic), zap.Int32("partition", p),
				zap.Int64("applied_through", ps.applyFrom), zap.Int64("published_through", ps.published))
		}
	}
	if len(pause) > 0 {
		w.cl.PauseFetchPartitions(pause)
	}
	if len(resume) > 0 {
		w.cl.ResumeFetchPartitions(resume)
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	return assigned, nil
}

// loadPartition reads a newly assigned partition's offsets and feature
// versions from Pebble and returns its state and the offset to fetch from.
// A partition with no state here, when tryRestore is set and snapshots are
// configured, is returned restoring (ps.restoring): a background restore is
// started (startRestore), and the caller pauses it until finishRestores
// loads it again. w.mu held.
func (w *Worker) loadPartition(ctx context.Context, plan *events.Plan, tp topicPartition, tryRestore bool) (*partState, kgo.Offset, error) {
	ps := &partState{tp: tp, plan: plan, metrics: w.planMetrics[tp.topic], cache: map[string]*entityState{}, dirty: map[dirtyTile]int64{}, seenID: seenID(plan),
		newest: make([]int64, len(plan.Features)), fresh: make([]atomic.Int64, len(plan.Features))}
	if n, err := w.partitionCount(ctx, tp.topic); err != nil {
		w.log.Warn("records outside their canonical partition are not counted for this partition", zap.Error(err))
	} else {
		ps.canon = newCanonical(n)
	}
	applied, hasApplied, err := w.o.Store.GetOffset(keys.Offset(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	published, hasPublished, err := w.o.Store.GetOffset(keys.Published(tp.topic, tp.partition))
	if err != nil {
		return nil, kgo.Offset{}, err
	}
	if plan.Repartition != nil {
		if ps.marks, err = loadMarks(w.o.Store, tp, ""); err != nil {
			return nil, kgo.Offset{}, err
		}
	}
	// Snapshots hold source partitions only: a repartition partition new
	// to this store replays its topic (marks included) from the start.
	if !hasApplied && w.o.Snapshots != nil && tryRestore && plan.Repartition == nil {
		// New to this worker: start from the newest snapshot of the
		// partition, if any, instead of the earliest retained offset, so
		// that history older than the topic's retention is not lost.
		ps.restoring = true
		w.startRestore(plan, tp)
		return ps, kgo.NewOffset().AtStart(), nil
	}
	ps.applyFrom = applied
	if err := w.loadFeatures(ps, applied, hasApplied); err != nil {
		return nil, kgo.Offset{}, err
	}
	if err := w.loadRekeyHistory(ps, applied, hasApplied); err != nil {
		return nil, kgo.Offset{}, err
	}
	start := w.fetchStart(ps, applied, hasApplied, published, hasPublished)
	if h, ok := ps.rekeyHistoryStart(); ok && hasApplied && h < ps.next {
		// Re-key history first: fetch from where it starts (records below
		// the published offset only produce re-keyed copies).
		ps.next = h
		start = kgo.NewOffset().At(h).WithEpoch(-1)
	}
	return ps, start, nil
}

// fetchStart sets ps.next and ps.published from the partition's committed
// offsets and returns the offset to fetch from.
func (w *Worker) fetchStart(ps *partState, applied int64, hasApplied bool, published int64, hasPublished bool) kgo.Offset {
	switch {
	case !hasApplied:
		// Never seen: replay everything retained.
		return kgo.NewOffset().AtStart()
	case hasPublished && published >= applied:
		ps.next, ps.published = applied, applied
		return kgo.NewOffset().At(applied).WithEpoch(-1)
	case hasPublished:
		ps.next, ps.published = published, published
		return kgo.NewOffset().At(published).WithEpoch(-1)
	default:
		// Applied but publication state unknown: republish from the start.
		return kgo.NewOffset().AtStart()
	}
}

// onRevoked hands revoked partitions over: it publishes and flushes their
// unpublished tiles (and records them as published), so that nothing this
// worker computed for them reaches the feature log after the next owner
// starts, then forgets them. franz-go calls it before this member rejoins,
// so before the next owner is assigned them; with BlockRebalanceOnPoll never
// while a poll's records are processed. Cooperative rebalancing passes only
// the partitions that move. A failed publication makes Run return its error
// (restart the worker: the published offset was not recorded, so a later
// owner from this store republishes).
func (w *Worker) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	marks := w.forget(ctx, revoked, true)
	if len(revoked) == 0 {
		return
	}
	// The next owner reads these marks when it is assigned the partitions.
	w.commitMarksNow(ctx, marks)
	w.log.Info("partitions revoked", zap.Any("partitions", revoked))
}

// onLost forgets partitions lost without a hand-over (this member was
// dropped from the group: another may own them already). Their unpublished
// tiles are dropped, not published: a late publication could overwrite the
// new owner's newer values. The new owner computes them from its own
// offsets; this store's published offset stays behind its applied offset,
// so if the partitions come back here they are republished.
func (w *Worker) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.forget(ctx, lost, false)
	if len(lost) > 0 {
		w.log.Warn("partitions lost", zap.Any("partitions", lost))
	}
}

// forget removes partitions from the publisher (publishing their pending
// tiles first when publish is set) and from the owned set, and returns
// their published marks.
func (w *Worker) forget(ctx context.Context, parts map[string][]int32, publish bool) map[string]map[int32]kgo.EpochOffset {
	w.callbackStart.Store(time.Now().UnixNano())
	defer w.callbackStart.Store(0)
	gone := make(map[topicPartition]bool)
	for topic, ps := range parts {
		for _, p := range ps {
			gone[topicPartition{topic, p}] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	// Bounded: the group waits for this callback at most the rebalance
	// timeout.
	pctx, cancel := context.WithTimeout(ctx, w.o.RebalanceTimeout)
	if err := w.pub.handOver(pctx, func(ps *partState) bool { return gone[ps.tp] }, publish); err != nil {
		err = fmt.Errorf("publish revoked partitions: %w", err)
		w.fatal.CompareAndSwap(nil, &err)
		if wake := w.wake.Load(); wake != nil {
			(*wake)()
		}
		w.log.Error("publish on revoke", zap.Error(err))
	}
	cancel()

	w.mu.Lock()
	unpause := map[string][]int32{}
	marks := map[string]map[int32]kgo.EpochOffset{}
	for tp := range gone {
		if ps := w.parts[tp]; ps != nil {
			addMark(marks, tp, ps.mark.Load())
		}
		if ps := w.parts[tp]; ps != nil && ps.restoring {
			unpause[tp.topic] = append(unpause[tp.topic], tp.partition)
		}
		if ps := w.parts[tp]; ps != nil && len(ps.boot) > 0 {
			w.bootChanged.Store(true)
		}
		delete(w.parts, tp)
		w.m.ConsumerLag.DeleteLabelValues(tp.topic, strconv.Itoa(int(tp.partition)))
	}
	w.m.Assigned.Set(float64(len(w.parts)))
	w.mu.Unlock()
	if len(unpause) > 0 && w.cl != nil {
		w.cl.ResumeFetchPartitions(unpause) // no longer ours: nothing is fetched
	}
	return marks
}

func (w *Worker) partition(topic string, p int32) *partState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.parts[topicPartition{topic, p}]
}

// setQuietUntil sets the published mark the partition was assigned with
// (see publishedmark.go) and the mark to commit.
func (ps *partState) setQuietUntil(mark int64) {
	ps.quietUntil = mark
	ps.mark.Store(max(ps.published, mark))
}
