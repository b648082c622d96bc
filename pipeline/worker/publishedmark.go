package worker

// Published marks: the group's committed offset of a source partition is
// the offset below which the feature log holds every tile the partition's
// records touched, published from a state at least that new. An owner
// commits it once publication is flushed (periodically, on hand-over and
// at shutdown), never further than it published.
//
// A new owner reads it when assigned (Worker.adjustOffsets). Its own store
// may be older (each worker resumes from its own Pebble offsets): records
// below the mark then change its state but publish nothing (partState.quiet),
// because the values it would publish while catching up are older than the
// feature log's. Published, they would move the lookups back in time, and
// for good when the partition then moves to an owner already past those
// records, which never touches those tiles again.

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// committedMark is the published mark an assignment's offset carries: the
// group's committed offset, or 0 when the group has none (franz-go then
// passes the reset offset, which is not an exact offset).
func committedMark(o kgo.Offset) int64 {
	return max(o.EpochOffset().Offset, 0)
}

// markCommits serializes the commits of published marks: the periodic ones,
// from a goroutine of their own so that a commit franz-go holds back while
// the group joins and syncs never stalls the partitions this worker keeps,
// and the final ones of a hand-over or a shutdown. A periodic commit reads
// its marks before franz-go lets it through, so it may carry older marks
// than a hand-over's; the hand-over cancels it and waits for it first, so
// that a partition's mark never moves back.
type markCommits struct {
	mu       sync.Mutex // held for the duration of each commit
	cancelMu sync.Mutex
	cancel   context.CancelFunc // of the periodic commit in flight; nil: none
	running  atomic.Bool
	wg       sync.WaitGroup
}

// publishedMarks returns the marks to commit of the owned partitions.
func (w *Worker) publishedMarks() map[string]map[int32]kgo.EpochOffset {
	w.mu.Lock()
	defer w.mu.Unlock()
	marks := map[string]map[int32]kgo.EpochOffset{}
	for tp, ps := range w.parts {
		addMark(marks, tp, ps.mark.Load())
	}
	return marks
}

func addMark(marks map[string]map[int32]kgo.EpochOffset, tp topicPartition, mark int64) {
	if mark <= 0 {
		return
	}
	if marks[tp.topic] == nil {
		marks[tp.topic] = map[int32]kgo.EpochOffset{}
	}
	marks[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: mark}
}

// commitMarksPeriodically commits the owned partitions' marks in the
// background unless a periodic commit still runs. The marks are only
// monitoring (consumer-group lag) until a partition moves: committing them
// late or not at all costs a new owner some publications it could have
// skipped, never a value.
func (w *Worker) commitMarksPeriodically(ctx context.Context) {
	c := &w.commits
	if !c.running.CompareAndSwap(false, true) {
		return
	}
	marks := w.publishedMarks()
	cctx, cancel := context.WithCancel(ctx)
	c.cancelMu.Lock()
	c.cancel = cancel
	c.cancelMu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.running.Store(false)
		defer cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		w.commitMarks(cctx, marks)
		c.cancelMu.Lock()
		c.cancel = nil
		c.cancelMu.Unlock()
	}()
}

// commitMarksNow commits marks and returns when the commit is done, after
// cancelling and waiting for a periodic commit in flight.
func (w *Worker) commitMarksNow(ctx context.Context, marks map[string]map[int32]kgo.EpochOffset) {
	c := &w.commits
	c.cancelMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.cancelMu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	w.commitMarks(ctx, marks)
}

// stopCommits cancels a periodic commit in flight and waits for it.
func (w *Worker) stopCommits() {
	c := &w.commits
	c.cancelMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.cancelMu.Unlock()
	c.wg.Wait()
}

// commitMarks commits marks as the group's offsets; failures are logged
// (see commitMarksPeriodically for what they cost).
func (w *Worker) commitMarks(ctx context.Context, marks map[string]map[int32]kgo.EpochOffset) {
	if len(marks) == 0 {
		return
	}
	w.cl.CommitOffsetsSync(ctx, marks, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
		topics:
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err = kerr.ErrorForCode(p.ErrorCode); err != nil {
						break topics
					}
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			w.log.Info("commit published marks (the group's offsets); a later commit retries", zap.Error(err))
		}
	})
}
