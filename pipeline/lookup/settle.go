package lookup

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/keys"
)

// Settling the view after a catch-up.
//
// A catch-up writes each entity's records as merge operands (viewmerge.go),
// one per entity and batch, so a replica that replayed a long feature log
// leaves most entities several operands, each holding every record of its
// batch. Until a compaction merges them, every read of such an entity
// merges all of them again: measured ~0.8 ms per entity for the 5,000 users
// of `featurepipe dev` after its history, against a few microseconds for a
// whole view. Compactions do not help by themselves: they run as new
// writes arrive, and a manual compaction of a store nothing overlaps only
// moves its tables down, operands included.
//
// So once a catch-up wrote settleAfterCatchUp operands or more, settleViews
// reads every view in key order (each read merges its operands once) and
// writes it back whole (a Set), settleChunk views at a time, in the
// background while the replica serves. A chunk holds viewMu, as
// commitLogBatch does, so no feature-log batch commits between a view's
// read and its rewrite; the rewrite is the value a lookup would read, so
// the lookup cache stays as it is. Cost: one read and one write of every
// view, about what a lookup of each entity would have paid once.

// settleAfterCatchUp is the number of merge operands a catch-up must have
// written for the view to be settled. A variable for tests.
var settleAfterCatchUp int64 = 10_000

// settleChunk is the number of views settled under one hold of viewMu: the
// longest a feature-log batch waits for the settling (a few milliseconds).
const settleChunk = 256

// settleViews rewrites every view whole, chunk by chunk, until done or ctx
// ends; s.settled, if set (tests), is called when it ends.
func (s *Service) settleViews(ctx context.Context, operands int64) {
	defer func() {
		if s.settled != nil {
			s.settled()
		}
	}()
	start, views := time.Now(), 0
	from := keys.View(nil, "", "")[:1] // the view keys' prefix
	upper := []byte{from[0] + 1}
	for from != nil && ctx.Err() == nil {
		var n int
		var err error
		from, n, err = s.settleNext(from, upper)
		views += n
		if err != nil {
			s.log.Warn("settling the view after the catch-up stopped: reads merge the operands left until compactions do", zap.Error(err))
			return
		}
	}
	if ctx.Err() == nil {
		s.log.Info("settled the view after the catch-up: every view written whole", zap.Int64("merge_operands", operands),
			zap.Int("views", views), zap.Duration("took", time.Since(start)))
	}
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
	b := s.o.Store.NewBatch()
	defer b.Close()
	valid := it.First()
	for ; valid && n < settleChunk; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, 0, fmt.Errorf("view %q: %w", it.Key(), err)
		}
		_ = b.Set(it.Key(), v, nil)
		n++
	}
	if valid {
		next = append([]byte(nil), it.Key()...)
	}
	if err := it.Close(); err != nil {
		return nil, 0, fmt.Errorf("view iterator: %w", err)
	}
	if err := s.o.Store.CommitNoSync(b); err != nil {
		return nil, 0, fmt.Errorf("rewrite views: %w", err)
	}
	return next, n, nil
}
