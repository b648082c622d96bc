package backfill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/entity"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
)

// ErrSnapshotUnusable is wrapped by the reasons SnapshotUsable gives for
// refusing a snapshot.
var ErrSnapshotUnusable = errors.New("snapshot unusable for this backfill")

// SnapshotNeeds is what a backfill needs of the snapshot of one source
// partition for its values to stay exact; see SnapshotUsable.
type SnapshotNeeds struct {
	// MinT is the earliest spine time (epoch ms).
	MinT int64
	// Features are the requested features fed by the partition's topic, by
	// id ("name@version"), with their definition hashes and windows.
	Features []SnapshotFeature
	// LogStart and End are the partition's log start and end offsets: the
	// snapshot's NextOffset must lie between them, else records between the
	// snapshot and the retained log are lost (or the topic was recreated).
	LogStart, End int64
}

// SnapshotFeature is one requested feature as SnapshotUsable checks it.
type SnapshotFeature struct {
	ID     string
	Hash   string
	Window aggregations.Window
}

// SnapshotUsable reports whether source partition sp of snapshot m can seed
// a backfill with needs n, or why not (an error wrapping
// ErrSnapshotUnusable). The rules, each needed for exactness:
//
//   - every event in it is before the earliest spine time:
//     sp.MaxEventTime < n.MinT, so a read at any row's T folds all of it,
//     pending events included;
//   - it was taken at or before the earliest spine time: m.CreatedAt <=
//     n.MinT, so every event in it had arrived by any row's T (needed by
//     ModeArrival);
//   - no tile a row reads was expired: the worker's clock was at most
//     CreatedAt, and for every finite window w.Horizon(CreatedAt) <=
//     w.Start(n.MinT) (implied by the previous rule, checked first for a
//     clearer reason; lifetime windows fold old tiles into Base, which is
//     kept);
//   - it holds every requested feature with the same definition (id and
//     hash in m.Features);
//   - n.LogStart <= sp.NextOffset <= n.End: the replay continues exactly
//     where the snapshot stops.
func SnapshotUsable(m *snapshot.Manifest, sp snapshot.SourcePartition, n SnapshotNeeds) error {
	created := m.CreatedAt.UnixMilli()
	switch {
	case sp.MaxEventTime >= n.MinT:
		return fmt.Errorf("%w: it holds events up to %s, not before the earliest spine time %s",
			ErrSnapshotUnusable, fmtMS(sp.MaxEventTime), fmtMS(n.MinT))
	case sp.NextOffset < n.LogStart:
		return fmt.Errorf("%w: it stops at offset %d but the log starts at %d (records in between are gone)",
			ErrSnapshotUnusable, sp.NextOffset, n.LogStart)
	case sp.NextOffset > n.End:
		return fmt.Errorf("%w: it stops at offset %d, after the end offset %d (was the topic recreated?)",
			ErrSnapshotUnusable, sp.NextOffset, n.End)
	}
	have := make(map[string]string, len(m.Features))
	for _, f := range m.Features {
		have[f.ID] = f.Hash
	}
	for _, f := range n.Features {
		h, ok := have[f.ID]
		switch {
		case !ok:
			return fmt.Errorf("%w: it has no state of feature %s", ErrSnapshotUnusable, f.ID)
		case h != f.Hash:
			return fmt.Errorf("%w: its feature %s has another definition (hash %.12s, want %.12s)", ErrSnapshotUnusable, f.ID, h, f.Hash)
		case !f.Window.Lifetime() && f.Window.Horizon(created) > f.Window.Start(n.MinT):
			return fmt.Errorf("%w: feature %s (%s) may have expired tiles from %s on, but the earliest spine time reads from %s",
				ErrSnapshotUnusable, f.ID, f.Window, fmtMS(f.Window.Horizon(created)), fmtMS(f.Window.Start(n.MinT)))
		}
	}
	if created > n.MinT {
		return fmt.Errorf("%w: taken at %s, after the earliest spine time %s (its events' arrivals are unknown)",
			ErrSnapshotUnusable, fmtMS(created), fmtMS(n.MinT))
	}
	return nil
}

func fmtMS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// seeds are the series loaded from snapshots: per spine entity, one series
// per column (zero for the columns of sources without a snapshot), then the
// entity's first-seen marker (index len(cols); its Base.LastTS is the
// earliest event time of the entity in the snapshots' sources, empty if
// none has one: see pipeline/worker/seen.go). The sweep takes ownership of
// an entity's series when it starts on that entity.
type seeds map[int32][]aggregations.Series

// mergeSeen keeps in dst the earlier of two first-seen markers.
func mergeSeen(dst, src *aggregations.Series) {
	if !src.Base.Empty() && (dst.Base.Empty() || src.Base.LastTS < dst.Base.LastTS) {
		dst.Base = src.Base
	}
}

// seedFromSnapshots chooses a snapshot for every partition of srcs (whose
// ranges are listed), loads the state of the spine's entities (keep) from
// them and moves the start of those ranges to the snapshots' NextOffset.
// Partitions without a usable snapshot, or whose snapshot turns out corrupt
// while loading, keep their replay range. Only backend failures and
// cancellation are errors.
func (o *Options) seedFromSnapshots(ctx context.Context, srcs []*sourceReplay, cols []column, keep map[string]int32, minT int64) (seeds, error) {
	type partRef struct{ src, i int }
	needs := map[string]map[int32]SnapshotNeeds{}
	where := map[snapshot.TopicPartition]partRef{}
	var want []snapshot.TopicPartition
	for si, s := range srcs {
		var feats []SnapshotFeature
		for _, c := range cols {
			if c.src == si {
				feats = append(feats, SnapshotFeature{ID: c.feature.ID, Hash: c.feature.Hash, Window: c.plan.Window})
			}
		}
		byPart := map[int32]SnapshotNeeds{}
		for i, r := range s.ranges {
			byPart[r.Partition] = SnapshotNeeds{MinT: minT, Features: feats, LogStart: s.logStarts[i], End: r.To}
			tp := snapshot.TopicPartition{Topic: r.Topic, Partition: r.Partition}
			want = append(want, tp)
			where[tp] = partRef{si, i}
		}
		needs[s.plan.Source.Topic] = byPart
	}
	refused := map[snapshot.TopicPartition]error{} // the newest refusal per partition
	choices, problems, err := o.Snapshots.Newest(ctx, want, func(m *snapshot.Manifest, sp snapshot.SourcePartition) bool {
		n, ok := needs[sp.Topic][sp.Partition]
		if !ok {
			return false
		}
		err := SnapshotUsable(m, sp, n)
		if tp := sp.TopicPartition(); err != nil && refused[tp] == nil {
			refused[tp] = fmt.Errorf("snapshot %s: %w", m.ID, err)
		}
		return err == nil
	})
	if err != nil {
		return nil, fmt.Errorf("choose snapshots: %w", err)
	}
	for _, p := range problems {
		o.Log.Warn("corrupt or partial snapshot skipped", zap.Error(p))
	}

	// Feature id -> column, per source.
	colOf := make([]map[string]int, len(srcs))
	for c, col := range cols {
		if colOf[col.src] == nil {
			colOf[col.src] = map[string]int{}
		}
		colOf[col.src][col.feature.ID] = c
	}
	type load struct {
		tp     snapshot.TopicPartition
		choice snapshot.Choice
		ref    partRef
		got    seeds
		err    error
	}
	var loads []*load
	for _, tp := range want {
		c, ok := choices[tp]
		if !ok {
			fields := []zap.Field{zap.Stringer("partition", tp)}
			if r := refused[tp]; r != nil {
				fields = append(fields, zap.NamedError("newest_refused", r))
			}
			o.Log.Info("no usable snapshot; replaying the partition", fields...)
			continue
		}
		loads = append(loads, &load{tp: tp, choice: c, ref: where[tp]})
	}

	// Load the chosen SSTs, a few at a time: each is a download, a
	// verification and a pass over its keys.
	sem := make(chan struct{}, max(1, min(runtime.GOMAXPROCS(0), 8)))
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			l.got, l.err = o.readSnapshot(ctx, l.choice, colOf[l.ref.src], len(cols), keep, srcs[l.ref.src].foreign)
		}()
	}
	wg.Wait()

	out := seeds{}
	for _, l := range loads {
		if l.err != nil {
			if errors.Is(l.err, snapshot.ErrCorrupt) || errors.Is(l.err, snapshot.ErrNotExist) {
				// Corrupted or pruned since Newest verified it: replay instead.
				o.Log.Warn("snapshot unreadable; replaying the partition", zap.Stringer("partition", l.tp), zap.Error(l.err))
				continue
			}
			return nil, fmt.Errorf("load snapshot %s (%s): %w", l.choice.Manifest.ID, l.choice.Source.File, l.err)
		}
		for e, series := range l.got {
			have, ok := out[e]
			if !ok {
				out[e] = series
				continue
			}
			// The entity also has state in another partition of the topic
			// or another source (e.g. partitions were added): merge.
			for c := range cols {
				mergeSeries(&have[c], &series[c])
			}
			mergeSeen(&have[len(cols)], &series[len(cols)])
		}
		src := srcs[l.ref.src]
		r := &src.ranges[l.ref.i]
		r.From = max(r.From, l.choice.Source.NextOffset)
		r.Snapshot = l.choice.Manifest.ID
		o.Log.Info("partition starts from a snapshot", zap.Stringer("partition", l.tp),
			zap.String("snapshot", l.choice.Manifest.ID), zap.Time("snapshot_created_at", l.choice.Manifest.CreatedAt),
			zap.Int64("from", r.From), zap.Int("entities", len(l.got)))
	}
	return out, nil
}

// readSnapshot decodes the state of the spine's entities (keep) from one
// chosen snapshot partition: for each, the series of the features in colOf
// (feature id -> column), in a slice of ncols series, and its first-seen
// marker after them. State of a key in foreign (a sharded run's entities
// of other shards, sourceReplay.foreign) fails it with ErrNotCanonical, as
// a replayed record of one does.
func (o *Options) readSnapshot(ctx context.Context, c snapshot.Choice, colOf map[string]int, ncols int, keep map[string]int32, foreign map[string]int) (seeds, error) {
	got := seeds{}
	err := o.Snapshots.Read(ctx, c.Manifest, c.Source.File, func(k, v []byte) error {
		key, err := keys.EntityKeyFromState(k)
		if err != nil {
			return fmt.Errorf("%w: %v", snapshot.ErrCorrupt, err)
		}
		e, ok := keep[key]
		if !ok {
			if owner, theirs := foreign[key]; theirs {
				return fmt.Errorf("%w: snapshot %s of %s/%d holds state of entity %q, which belongs to shard %d: "+
					"the producers of %s do not partition by murmur2 of the key; run this backfill without --shard",
					ErrNotCanonical, c.Manifest.ID, c.Source.Topic, c.Source.Partition, key, owner, c.Source.Topic)
			}
			return nil // not in the spine
		}
		series := make([]aggregations.Series, ncols+1)
		if err := entity.Decode(v, func(id []byte) *aggregations.Series {
			if c, ok := colOf[string(id)]; ok {
				return &series[c]
			}
			if keys.IsSeen(id) {
				return &series[ncols]
			}
			return nil
		}); err != nil {
			return fmt.Errorf("%w: entity %q: %v", snapshot.ErrCorrupt, key, err)
		}
		got[e] = series
		return nil
	})
	return got, err
}

// mergeSeries adds the tiles and Base of src to dst; src must not be used
// afterwards.
func mergeSeries(dst, src *aggregations.Series) {
	dst.Base.Merge(src.Base)
	for _, t := range src.Tiles {
		if have, ok := dst.Tile(t.Start); ok {
			have.IR.Merge(t.IR)
			have.Pending = append(have.Pending, t.Pending...)
			dst.SetTile(have)
			continue
		}
		dst.SetTile(t)
	}
}

// sortedSnapshotIDs returns the distinct snapshot ids of ranges.
func sortedSnapshotIDs(ranges []OffsetRange) []string {
	var ids []string
	for _, r := range ranges {
		if r.Snapshot != "" && !slices.Contains(ids, r.Snapshot) {
			ids = append(ids, r.Snapshot)
		}
	}
	slices.SortFunc(ids, cmp.Compare[string])
	return ids
}
