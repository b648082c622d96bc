package lookup

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
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
// cover every source partition (merged and ingested as one sstable, see
// ingestSnapshots), and records per feature-log partition the
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
	ids := map[string]bool{}
	byEntity := map[string][]*snapshotInput{} // the files to merge, by entity
	for _, c := range choices {
		src, ok := s.o.Config.SourceByTopic(c.Source.Topic)
		if !ok || src.Entity == nil {
			continue
		}
		ids[c.Manifest.ID] = true
		byEntity[src.Entity.Name] = append(byEntity[src.Entity.Name], &snapshotInput{choice: c, updated: c.Manifest.CreatedAt.UnixMilli()})
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
	entities, err := s.ingestSnapshots(ctx, byEntity)
	if err != nil {
		return err
	}
	b := s.o.Store.NewBatch()
	for p, off := range start {
		_ = b.Set(keys.ViewLogOffset(s.o.Config.Kafka.FeatureLogTopic, p), keys.PutU64(max(off, 0)), nil)
	}
	if err := s.o.Store.Commit(b); err != nil {
		return err
	}
	s.log.Info("view loaded from snapshots", zap.Int("snapshots", len(ids)), zap.Int("partitions", len(choices)),
		zap.Int64("entity_values", entities), zap.Any("feature_log_from", start), zap.Duration("took", time.Since(t0)))
	return nil
}

// snapshotInput is one snapshot file being merged into the view.
type snapshotInput struct {
	choice  snapshot.Choice
	updated int64 // ms: when the snapshot was taken
	r       *snapshot.Reader
	key     []byte // the entity key of the current pair, aliasing r
	ok      bool   // r is at a pair
}

// next moves in to its next pair.
func (in *snapshotInput) next() error {
	if in.ok = in.r.Next(); !in.ok {
		return in.r.Err()
	}
	key, err := keys.StateEntityKey(in.r.Key())
	if err != nil {
		return fmt.Errorf("snapshot %s (%s): %w", in.choice.Manifest.ID, in.choice.Source.File, err)
	}
	in.key = key
	return nil
}

// ingestSnapshots builds the view of every entity from the snapshot files
// of byEntity and ingests it into the empty store as one sstable
// (state.Store.IngestSorted): no read of the store, no memtable, no
// compaction. Each file holds one source partition's state of one entity
// type in entity-key order, so a merge of an entity type's files visits its
// entities in view-key order and sees every partition holding an entity at
// once: the entity's view gets one series per (feature, source partition)
// present, as the feature log would give it. It returns the number of
// entities written.
func (s *Service) ingestSnapshots(ctx context.Context, byEntity map[string][]*snapshotInput) (int64, error) {
	prefix := func(name string) []byte { return keys.View(nil, name, "") }
	names := make([]string, 0, len(byEntity))
	for name := range byEntity {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return bytes.Compare(prefix(a), prefix(b)) })
	defer func() {
		for _, ins := range byEntity {
			for _, in := range ins {
				if in.r != nil {
					in.r.Close()
				}
			}
		}
	}()
	// Download and verify the files side by side: I/O and checksums.
	var wg sync.WaitGroup
	files := 0
	for _, ins := range byEntity {
		files += len(ins)
	}
	errs := make(chan error, files)
	for _, name := range names {
		for _, in := range byEntity[name] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.o.Snapshots.Open(ctx, in.choice.Manifest, in.choice.Source.File)
				if err != nil {
					errs <- err
					return
				}
				in.r = r
			}()
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	var (
		e          entityView
		kbuf, vbuf []byte
		intern     = map[string]string{} // feature ids, allocated once
	)
	return s.o.Store.IngestSorted(ctx, func(set func(key, value []byte) error) error {
		for _, name := range names {
			ins := byEntity[name]
			for _, in := range ins {
				if err := in.next(); err != nil {
					return err
				}
			}
			kp := len(prefix(name))
			for {
				var least []byte
				for _, in := range ins {
					if in.ok && (least == nil || bytes.Compare(in.key, least) < 0) {
						least = in.key
					}
				}
				if least == nil {
					break
				}
				// The view key: keys.View(name, entity key), built from bytes.
				kbuf = append(keys.View(kbuf[:0], name, ""), least...)
				e.reset()
				for _, in := range ins {
					if !in.ok || !bytes.Equal(in.key, kbuf[kp:]) {
						continue
					}
					v, err := in.r.Value()
					if err != nil {
						return err
					}
					part := in.choice.Source.Partition
					if err := entity.Decode(v, func(id []byte) *aggregations.Series {
						// A file holds one source partition's state: it
						// fills that partition's series of the feature only.
						i := e.index(string(id), part) // does not escape: no allocation
						if i < 0 {
							sid, ok := intern[string(id)]
							if !ok {
								sid = string(id)
								intern[sid] = sid
							}
							i = e.add(sid, part)
						}
						e.updated[i] = in.updated
						return &e.series[i]
					}); err != nil {
						return fmt.Errorf("load snapshot %s (%s): %w", in.choice.Manifest.ID, in.choice.Source.File, err)
					}
					if err := in.next(); err != nil {
						return err
					}
				}
				vbuf = e.encode(vbuf[:0])
				if err := set(kbuf, vbuf); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
