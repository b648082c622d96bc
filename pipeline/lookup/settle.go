package lookup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// Settling the view.
//
// A replica writes each entity's feature-log records as merge operands
// (viewmerge.go), one per entity and batch, except for the entities its
// lookup cache holds. So a replica that replayed a long feature log, or
// followed a burst of it (a worker's backlog, a republication), leaves many
// entities several operands, each holding every record of its batch. Until a
// compaction merges them into the bottom level, every read of such an entity
// merges all of them again: measured ~0.8 ms per entity for the 5,000 users
// of `featurepipe dev` after its history, against a few microseconds for a
// whole view. Compactions do not settle it by themselves: they run as new
// writes arrive, and a manual compaction of a store nothing overlaps only
// moves its tables down, operands included.
//
// So once the operands written since the last settling reach
// max(settleAfter, the views the last one rewrote) (on average one per
// entity: the rewrite's cost, proportional to the entities, is paid once
// per as many operands), settleViews reads every view in key order (each
// read merges its operands once) and writes it back whole (a Set),
// settleChunk views at a time, pausing after each as long as it took, in
// the background while the replica serves and follows. A chunk holds
// viewMu, as commitLogBatch does, so no feature-log batch commits between a
// view's read and its rewrite; the rewrite is the value a lookup would read,
// so the lookup cache stays as it is. Cost: one read and one write of every
// view, about what a lookup of each entity would have paid once.

// settleAfter is the fewest operands written since the last settling that
// start another. A variable for tests.
var settleAfter int64 = 10_000

// settleChunk is the number of views settled under one hold of viewMu,
// which bounds how long a feature-log batch waits for the settling: ~2 ms
// for views of a few operands each, up to ~64 ms for views of ~1 ms of
// operands each (the worst measured, after `featurepipe dev`'s history).
var settleChunk = 64 // a variable for tests

// settler starts settleViews when enough operands were written, again
// and again while more were written during a settling. maybeStart is
// called by the feature-log consumer's goroutine only; the fields are
// atomics because the settling goroutine reads and sets them too.
type settler struct {
	wg      sync.WaitGroup
	running atomic.Bool
	written atomic.Int64 // operands written so far (the consumer's count)
	from    atomic.Int64 // written when the last settling started
	views   atomic.Int64 // rewritten by the last settling
}

// due reports whether the operands written since the last settling reached
// the threshold.
func (st *settler) due() bool {
	return st.written.Load()-st.from.Load() >= max(settleAfter, st.views.Load())
}

// maybeStart records merges, the operands written so far, and starts the
// settling goroutine if none runs and a settling is due.
func (st *settler) maybeStart(ctx context.Context, s *Service, merges int64) {
	st.written.Store(merges)
	if !st.due() || !st.running.CompareAndSwap(false, true) {
		return // not due, or a settling runs (and looks again when it ends)
	}
	st.wg.Go(func() {
		for {
			w := st.written.Load()
			operands := w - st.from.Load()
			st.from.Store(w)
			st.views.Store(int64(s.settleViews(ctx, operands)))
			if ctx.Err() != nil {
				break
			}
			// Operands written while it ran: settle again if they are
			// enough, else leave it to the next maybeStart. Clearing
			// running first, then looking again, misses no write: a
			// maybeStart that saw running set stored its count before.
			st.running.Store(false)
			if !st.due() || !st.running.CompareAndSwap(false, true) {
				return
			}
		}
		st.running.Store(false)
	})
}

// settleViews rewrites every view whole, chunk by chunk, until done or ctx
// ends, and returns how many it rewrote; s.settled, if set (tests), is
// called when it ends, with the operands that started it.
//
// After each chunk it pauses as long as the chunk took, so
// the settling takes at most about half of one core, and the feature-log
// consumer finds viewMu free at least half of the time: without the pause,
// the goroutine took the mutex back as soon as it let it go, and a commit
// waited for the whole settling (~0.1 s for 5,000 views), which put freshness
// at 10,000 events/s from a p99 of ~12 ms to ~47 ms (`featurepipe load
// --freshness`, see the README).
func (s *Service) settleViews(ctx context.Context, operands int64) (views int) {
	defer func() {
		if s.settled != nil {
			s.settled(operands)
		}
	}()
	start := time.Now()
	from, upper := keys.ViewBounds()
	for from != nil && ctx.Err() == nil {
		began := time.Now()
		var n int
		var err error
		from, n, err = s.settleNext(from, upper)
		views += n
		if err != nil {
			s.log.Warn("settling the view stopped: reads merge the operands left until compactions do", zap.Error(err))
			return views
		}
		if from != nil {
			took := time.Since(began)
			if s.settlePausing != nil {
				s.settlePausing(took)
			}
			select {
			case <-time.After(took):
			case <-ctx.Done():
			}
		}
	}
	if ctx.Err() == nil {
		s.log.Info("settled the view: every view written whole", zap.Int64("merge_operands", operands),
			zap.Int("views", views), zap.Duration("took", time.Since(start)))
	}
	return views
}

// settleNext rewrites up to settleChunk views from key from on, and returns
// the key to go on from (nil: done) and how many it rewrote.
func (s *Service) settleNext(from, upper []byte) (next []byte, n int, err error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	it, err := s.o.Store.DB().NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: upper})
	if err != nil {
		return nil, 0, fmt.Errorf("view iterator: %w", err)
	}
	b := s.o.Store.NewBatch() // closed by CommitNoSync, or here on an error before it
	valid := it.First()
	for ; valid && n < settleChunk; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			err = fmt.Errorf("view %q: %w", it.Key(), err) // the key is the iterator's until Close
			it.Close()
			b.Close()
			return nil, 0, err
		}
		_ = b.Set(it.Key(), v, nil)
		n++
	}
	if valid {
		next = append([]byte(nil), it.Key()...)
	}
	if err := it.Close(); err != nil {
		b.Close()
		return nil, 0, fmt.Errorf("view iterator: %w", err)
	}
	if err := s.o.Store.CommitNoSync(b); err != nil {
		return nil, 0, fmt.Errorf("rewrite views: %w", err)
	}
	return next, n, nil
}
