package backfill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// finishShard writes shard m's manifest into the dataset directory and,
// when every shard's manifest is there and this shard wins the merge claim
// (an exclusive create of _shards/merge.claim), merges them into the
// dataset manifest, registers the dataset and returns that manifest.
// Otherwise it returns m: another shard finishes later, or already claimed
// the merge.
//
// Every shard writes its manifest before it looks for the others', so the
// last one to finish sees them all; when two finish together, both may
// see them all, and the claim lets exactly one merge. If the merge fails,
// the claim is removed, so a retried shard merges again. A shard killed
// between claiming and writing the dataset manifest leaves the claim
// behind: MergeShards (`backfill --merge`) then finishes the dataset.
func (o *Options) finishShard(ctx context.Context, m *Manifest, began time.Time) (*Manifest, error) {
	sh := o.Shard
	m.Shard = &sh
	m.DurationMS = o.Now().Sub(began).Milliseconds()
	dir := filepath.Join(o.Out, shardDir)
	if err := writeManifest(filepath.Join(dir, sh.shardManifestFile()), m); err != nil {
		_ = os.Remove(m.Output.Path)
		return nil, err
	}
	o.Log.Info("backfill shard written", zap.Stringer("shard", sh), zap.String("out", m.Output.Path),
		zap.Int("rows", m.Output.Rows), zap.Int64("records", m.Events.Records), zap.Int64("duration_ms", m.DurationMS))
	parts := make([]*Manifest, sh.Count)
	for i := range parts {
		p, err := ReadManifest(filepath.Join(dir, Shard{Index: i, Count: sh.Count}.shardManifestFile()))
		if errors.Is(err, fs.ErrNotExist) {
			return m, nil // not the last
		}
		if err != nil {
			return nil, err
		}
		parts[i] = p
	}
	claim := filepath.Join(dir, mergeClaim)
	f, err := os.OpenFile(claim, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return m, nil // another shard merges
	}
	if err != nil {
		return nil, fmt.Errorf("claim the merge of %s: %w", o.Out, err)
	}
	fmt.Fprintf(f, "shard %s\n", sh)
	_ = f.Close()
	ds, err := o.mergeShards(ctx, parts)
	if err != nil {
		_ = os.Remove(claim) // a retried shard merges again
		return nil, err
	}
	return ds, nil
}

// mergeShards merges the shards' manifests (all N, in index order) into
// the dataset manifest, registers the dataset and writes the manifest to
// ManifestPath(o.Out).
func (o *Options) mergeShards(ctx context.Context, parts []*Manifest) (*Manifest, error) {
	first := parts[0]
	for i, p := range parts {
		if err := sameRun(first, p); err != nil {
			return nil, fmt.Errorf("shard manifests in %s: shard %d and shard 0 are of different runs (%v): give each sharded run a new --out directory",
				filepath.Join(o.Out, shardDir), i, err)
		}
	}
	ds := &Manifest{
		ManifestVersion: ManifestVersion, CreatedAt: first.CreatedAt, Config: first.Config, Entity: first.Entity,
		KeyColumn: first.KeyColumn, PointInTime: first.PointInTime, FeatureService: first.FeatureService,
		Spine:  first.Spine,
		Output: ManifestOutput{Path: o.Out, Format: FormatParquet},
		Events: EventStats{Rejected: map[string]int64{}},
	}
	for j, f := range first.Features {
		f.Statistics = nil
		if first.Features[j].Statistics != nil {
			f.Statistics = monitor.NewStats()
		}
		ds.Features = append(ds.Features, f)
	}
	seen := map[OffsetRange]bool{}
	for _, p := range parts {
		if ds.CreatedAt.After(p.CreatedAt) {
			ds.CreatedAt = p.CreatedAt
		}
		ds.Output.Rows += p.Output.Rows
		ds.Shards = append(ds.Shards, ManifestShard{Index: p.Shard.Index, Path: p.Output.Path, Rows: p.Output.Rows, DurationMS: p.DurationMS})
		if tr := p.TimeRange; tr != nil {
			if ds.TimeRange == nil {
				c := *tr
				ds.TimeRange = &c
			} else {
				if tr.MinMS < ds.TimeRange.MinMS {
					ds.TimeRange.Min, ds.TimeRange.MinMS = tr.Min, tr.MinMS
				}
				if tr.MaxMS > ds.TimeRange.MaxMS {
					ds.TimeRange.Max, ds.TimeRange.MaxMS = tr.Max, tr.MaxMS
				}
			}
		}
		for _, r := range p.Sources {
			if !seen[r] {
				seen[r] = true
				ds.Sources = append(ds.Sources, r)
			}
		}
		ds.Events.Records += p.Events.Records
		ds.Events.Kept += p.Events.Kept
		for k, v := range p.Events.Rejected {
			ds.Events.Rejected[k] += v
		}
		for j := range ds.Features {
			if s := p.Features[j].Statistics; s != nil && ds.Features[j].Statistics != nil {
				if err := ds.Features[j].Statistics.Merge(s); err != nil {
					return nil, fmt.Errorf("feature %s: %w", ds.Features[j].Column, err)
				}
			}
		}
	}
	// Topics in the order of the single-process run (the shards' order),
	// then partitions and ranges ascending.
	topicOrder := map[string]int{}
	for _, r := range ds.Sources {
		if _, ok := topicOrder[r.Topic]; !ok {
			topicOrder[r.Topic] = len(topicOrder)
		}
	}
	slices.SortStableFunc(ds.Sources, func(a, b OffsetRange) int {
		return cmp.Or(cmp.Compare(topicOrder[a.Topic], topicOrder[b.Topic]), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	if ds.Sources == nil {
		ds.Sources = []OffsetRange{}
	}
	var err error
	if ds.Dataset, err = o.registerDataset(ctx, ds); err != nil {
		return nil, err
	}
	ds.DurationMS = o.Now().Sub(ds.CreatedAt).Milliseconds()
	if err := writeManifest(ManifestPath(o.Out), ds); err != nil {
		return nil, err
	}
	o.Log.Info("backfill dataset written", zap.String("out", o.Out), zap.Int("shards", len(parts)), zap.Int("rows", ds.Output.Rows),
		zap.String("dataset", ds.Dataset), zap.Int64("duration_ms", ds.DurationMS))
	return ds, nil
}

// sameRun tells whether shard manifests a and b are of one sharded run:
// same shard count, spine, feature file, point-in-time mode and columns.
func sameRun(a, b *Manifest) error {
	switch {
	case b.Shard == nil || a.Shard == nil || a.Shard.Count != b.Shard.Count:
		return errors.New("different shard counts")
	case a.Spine.SHA256 != b.Spine.SHA256:
		return errors.New("different spines")
	case a.Config != b.Config || a.PointInTime != b.PointInTime || a.Entity != b.Entity:
		return errors.New("different feature files or point-in-time modes")
	case len(a.Features) != len(b.Features):
		return errors.New("different features")
	}
	for j := range a.Features {
		if a.Features[j].Column != b.Features[j].Column || a.Features[j].Hash != b.Features[j].Hash {
			return fmt.Errorf("different features (%s, %s)", a.Features[j].Column, b.Features[j].Column)
		}
	}
	return nil
}

// MergeShards merges the shard manifests of the sharded dataset in o.Out
// (every shard finished) into its manifest and registers the dataset, as
// the last shard does (`backfill --merge`): the recovery when that shard
// died between claiming the merge and writing the manifest. It overrides a
// claim left behind, so run it only when no shard is still running. It
// needs Brokers, Config, Out and the shards' Dataset options; the other
// Options are ignored. It fails when a shard manifest is missing or the
// dataset already has its manifest.
func MergeShards(ctx context.Context, o Options) (*Manifest, error) {
	if len(o.Brokers) == 0 || o.Config == nil || o.Out == "" {
		return nil, fmt.Errorf("%w: merging shards needs brokers, a feature file and the dataset directory (Out)", ErrInvalidOptions)
	}
	if o.Dataset.Name == "" {
		o.Dataset.Name = datasetName(o.Out)
	}
	if err := registry.ValidName("dataset", o.Dataset.Name); err != nil {
		return nil, fmt.Errorf("%w: %v (set the dataset name)", ErrInvalidOptions, err)
	}
	if o.Dataset.Actor == "" {
		o.Dataset.Actor = registry.OSUser()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if _, err := os.Stat(ManifestPath(o.Out)); err == nil {
		return nil, fmt.Errorf("%s already has its manifest %s: nothing to merge", o.Out, ManifestPath(o.Out))
	}
	dir := filepath.Join(o.Out, shardDir)
	found, err := filepath.Glob(filepath.Join(dir, "part-*-of-*.json"))
	if err != nil || len(found) == 0 {
		return nil, fmt.Errorf("no shard manifests in %s: is %s a sharded backfill's --out?", dir, o.Out)
	}
	first, err := ReadManifest(found[0])
	if err != nil {
		return nil, err
	}
	if first.Shard == nil {
		return nil, fmt.Errorf("%s is not a shard manifest", found[0])
	}
	parts := make([]*Manifest, first.Shard.Count)
	var missing []string
	for i := range parts {
		p := filepath.Join(dir, Shard{Index: i, Count: first.Shard.Count}.shardManifestFile())
		if parts[i], err = ReadManifest(p); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, strconv.Itoa(i))
		} else if err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("shards %s of %d have not finished (no manifest in %s): run them first", strings.Join(missing, ", "), len(parts), dir)
	}
	claim := filepath.Join(dir, mergeClaim)
	if err := os.WriteFile(claim, []byte("backfill --merge\n"), 0o644); err != nil {
		return nil, fmt.Errorf("claim the merge of %s: %w", o.Out, err)
	}
	ds, err := o.mergeShards(ctx, parts)
	if err != nil {
		_ = os.Remove(claim)
		return nil, err
	}
	return ds, nil
}
