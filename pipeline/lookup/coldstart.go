package lookup

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
)

// coldStart fills an empty view from the newest snapshots that together
// cover every source partition, and records per feature-log partition the
// offset to continue from: the smallest offset any chosen snapshot
// corresponds to (0 where one of them has none), so that nothing published
// after any of the snapshots is missed; replaying a little more is harmless
// because feature-log records are absolute tile values. Corrupt snapshots
// are reported and skipped in favour of older ones. It does nothing, and
// the whole log is replayed, when no snapshot set covers every partition.
func (s *Service) coldStart(ctx context.Context, admin *kgo.Client, logPartitions map[int32]int64) error {
	if s.o.Snapshots == nil {
		return nil
	}
	t0 := time.Now()
	var want []snapshot.TopicPartition
	for _, src := range s.o.Config.Sources {
		if len(src.Features) == 0 {
			continue
		}
		ends, err := kafka.EndOffsets(ctx, admin, src.Topic)
		if err != nil {
			return err
		}
		for p := range ends {
			want = append(want, snapshot.TopicPartition{Topic: src.Topic, Partition: p})
		}
	}
	choices, problems, err := s.o.Snapshots.Newest(ctx, want, nil)
	if err != nil {
		return fmt.Errorf("choose snapshots: %w", err)
	}
	for _, p := range problems {
		s.log.Warn("corrupt or partial snapshot skipped", zap.Error(p))
	}
	if len(choices) < len(want) {
		s.log.Info("no snapshots cover every source partition; replaying the whole feature log",
			zap.Int("covered", len(choices)), zap.Int("partitions", len(want)))
		return nil
	}
	start := map[int32]int64{}
	for p := range logPartitions {
		start[p] = -1
	}
	entities := 0
	ids := map[string]bool{}
	for _, c := range choices {
		src, ok := s.o.Config.SourceByTopic(c.Source.Topic)
		if !ok || src.Entity == nil {
			continue
		}
		ids[c.Manifest.ID] = true
		updated := c.Manifest.CreatedAt.UnixMilli()
		b := s.o.Store.NewBatch()
		var e entityView
		var kbuf, vbuf []byte
		n := 0
		err := s.o.Snapshots.Read(ctx, c.Manifest, c.Source.File, func(k, v []byte) error {
			key, err := keys.EntityKeyFromState(k)
			if err != nil {
				return err
			}
			if _, err := s.load(src.Entity.Name, key, &e, kbuf, vbuf); err != nil {
				return err
			}
			if err := entity.Decode(v, func(id []byte) *aggregations.Series {
				// The snapshot holds one source partition's state: it
				// fills that partition's series of the feature only.
				i := e.index(string(id), c.Source.Partition) // does not escape: no allocation
				if i < 0 {
					i = e.add(string(id), c.Source.Partition)
				}
				e.updated[i] = updated
				return &e.series[i]
			}); err != nil {
				return err
			}
			kbuf = keys.View(kbuf[:0], src.Entity.Name, key)
			vbuf = e.encode(vbuf[:0])
			if err := b.Set(kbuf, vbuf, nil); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			b.Close()
			return fmt.Errorf("load snapshot %s (%s): %w", c.Manifest.ID, c.Source.File, err)
		}
		if err := s.o.Store.CommitNoSync(b); err != nil {
			return err
		}
		entities += n
		have := map[int32]int64{}
		for _, lp := range c.Manifest.FeatureLog {
			have[lp.Partition] = lp.Offset
		}
		for p, cur := range start {
			off := have[p] // 0 when this snapshot has none for p
			if cur < 0 || off < cur {
				start[p] = off
			}
		}
	}
	b := s.o.Store.NewBatch()
	for p, off := range start {
		_ = b.Set(keys.ViewLogOffset(s.o.Config.Kafka.FeatureLogTopic, p), keys.PutU64(max(off, 0)), nil)
	}
	if err := s.o.Store.Commit(b); err != nil {
		return err
	}
	s.log.Info("view loaded from snapshots", zap.Int("snapshots", len(ids)), zap.Int("partitions", len(choices)),
		zap.Int("entity_values", entities), zap.Any("feature_log_from", start), zap.Duration("took", time.Since(t0)))
	return nil
}
