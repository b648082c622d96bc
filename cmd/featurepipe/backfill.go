package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backfill", "--brokers B --config F --spine spine.csv|.parquet --out train.parquet|.csv|DIR [--features a,b,name@2 | --feature-service NAME] [--snapshots DIR|s3://bucket/prefix] [--shard i/N | --merge]", stderr)
	bf := addBatchFlags(fs, "feature file (YAML)", "point-in-time", "event: events with event time < T; arrival: also arrived (Kafka timestamp) <= T")
	spinePath := fs.String("spine", "", "spine: .csv or .parquet with the entity key column, a timestamp column (RFC 3339 or epoch ms) and any label columns")
	out := fs.String("out", "", "output .parquet or .csv (with --shard or --merge: the dataset's directory); the manifest goes to <out>.manifest.json")
	features := fs.String("features", "", "comma-separated features (name or name@version); default: every feature of the spine's entity")
	service := fs.String("feature-service", "", "a feature service of the feature file: the same as --features listing its features (not both); the manifest records its name")
	skipBad := fs.Bool("skip-bad-rows", false, "drop spine rows with a missing key or bad timestamp instead of failing")
	export := fs.String("export-events", "", "also write the replayed events of the spine's entities to this .parquet file (benchmarks)")
	snapDir := fs.String("snapshots", "", "the workers' snapshots (a directory or s3://bucket/prefix): start each partition from the newest snapshot taken before the earliest spine time, replaying only the records after it (windows may then exceed the topics' retention)")
	dsName := fs.String("dataset-name", "", "name of the dataset registered in the catalog (each run registers its next version, name@1, name@2, ...); default: the --out file's name without extension")
	dsDesc := fs.String("description", "", "the dataset's description (catalog)")
	dsOwner := fs.String("owner", "", "the dataset's owner (catalog)")
	actor := fs.String("actor", "", "who runs the backfill (catalog; default: the OS user)")
	shardFlag := fs.String("shard", "", "run shard i of N (0 <= i < N; e.g. $(JOB_COMPLETION_INDEX)/8 in a Kubernetes Indexed Job): "+
		"the spine rows whose key's canonical partition p (murmur2, the Java client's and franz-go's default partitioner) has p mod N == i, "+
		"replayed from those partitions only (re-keyed sources, or a source with another partition count than the first, are read in full). "+
		"--out is then a directory every shard can write: shard i writes DIR/part-<i>-of-<N>.parquet (e.g. part-00003-of-00008.parquet) and DIR/_shards/part-<i>-of-<N>.json, "+
		"and the last shard to finish writes the one manifest DIR.manifest.json and registers the dataset once. "+
		"The rows are exactly the single-process run's; a record of a spine entity outside its canonical partition fails the shard that reads it (run without --shard then). "+
		"Use a new DIR per run")
	merge := fs.Bool("merge", false, "only merge the shard manifests of the sharded dataset --out DIR into DIR.manifest.json and register it (with the shards' --dataset-name): "+
		"the recovery when the last shard died while merging; every shard must have finished, none may still run")
	b, err := bf.setup(ctx, fs, args, "out")
	if err != nil {
		return err
	}
	if *merge {
		if *shardFlag != "" {
			return usagef("--merge merges the shards' results: give it without --shard")
		}
		defer b.log.Sync()
		man, err := backfill.MergeShards(ctx, backfill.Options{Brokers: b.brokers, Config: b.cfg, Out: *out, Log: b.log,
			Dataset: backfill.DatasetOptions{Name: *dsName, Description: *dsDesc, Owner: *dsOwner, Actor: *actor}})
		if err != nil {
			if errors.Is(err, backfill.ErrInvalidOptions) {
				return usagef("%v", err)
			}
			return err
		}
		fmt.Fprintf(stdout, "%d shards merged: %d rows in %s; manifest %s\nregistered in the catalog as dataset %s\n",
			len(man.Shards), man.Output.Rows, man.Output.Path, backfill.ManifestPath(*out), man.Dataset)
		return nil
	}
	if err := required(fs, "spine"); err != nil {
		return err
	}
	shard, err := backfill.ParseShard(*shardFlag)
	if err != nil {
		return usagef("--shard: %v", err)
	}
	defer b.log.Sync()
	snaps, err := openSnapshots(ctx, *snapDir, 0, false)
	if err != nil {
		return err
	}
	man, err := backfill.Run(ctx, backfill.Options{
		Brokers: b.brokers, Config: b.cfg, Features: splitList(*features), FeatureService: *service, Spine: *spinePath, Out: *out,
		Mode: b.mode, SkipBadRows: *skipBad, Progress: stderr, Log: b.log, ExportEvents: *export,
		Limits: b.limits, Snapshots: snaps, Shard: shard,
		Dataset: backfill.DatasetOptions{Name: *dsName, Description: *dsDesc, Owner: *dsOwner, Actor: *actor},
	})
	if err != nil {
		if errors.Is(err, backfill.ErrInvalidOptions) || errors.Is(err, backfill.ErrFormat) {
			return usagef("%v", err)
		}
		return err
	}
	if man.Shard != nil {
		fmt.Fprintf(stdout, "shard %s: %d rows x %d features written to %s (%d records replayed, %d invalid skipped) in %s; "+
			"not every shard has finished: the last one to finish writes the manifest %s and registers the dataset\n",
			man.Shard, man.Output.Rows, len(man.Features), man.Output.Path, man.Events.Records, sumCounts(man.Events.Rejected),
			time.Duration(man.DurationMS)*time.Millisecond, backfill.ManifestPath(*out))
		return nil
	}
	if man.FeatureService != "" {
		fmt.Fprintf(stdout, "feature service %s: %s\n", man.FeatureService, manifestColumns(man))
	}
	fmt.Fprintf(stdout, "%d rows x %d features written to %s (%d records replayed, %d invalid skipped, %d bad spine rows dropped) in %s; manifest %s\n",
		man.Output.Rows, len(man.Features), man.Output.Path, man.Events.Records, sumCounts(man.Events.Rejected), man.Spine.BadRows,
		time.Duration(man.DurationMS)*time.Millisecond, backfill.ManifestPath(*out))
	if len(man.Shards) > 0 {
		fmt.Fprintf(stdout, "shard %s finished last: the dataset is %d Parquet files in %s\n", shard, len(man.Shards), man.Output.Path)
	}
	fmt.Fprintf(stdout, "registered in the catalog as dataset %s\n", man.Dataset)
	if snaps != nil {
		from := map[string]int{}
		for _, r := range man.Sources {
			if r.Snapshot != "" {
				from[r.Snapshot]++
			}
		}
		if len(from) == 0 {
			fmt.Fprintf(stdout, "no usable snapshot in %s: every partition was replayed (a snapshot must be taken before the earliest spine time)\n", *snapDir)
		}
		for _, id := range slices.Sorted(maps.Keys(from)) {
			fmt.Fprintf(stdout, "%d of %d partitions started from snapshot %s\n", from[id], len(man.Sources), id)
		}
	}
	return nil
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// manifestColumns lists the manifest's columns with the versions they were
// computed from, e.g. "txn_count_7d (txn_count_7d@1), ...".
func manifestColumns(m *backfill.Manifest) string {
	cols := make([]string, len(m.Features))
	for i, f := range m.Features {
		cols[i] = fmt.Sprintf("%s (%s@%d)", f.Column, f.Name, f.Version)
	}
	return strings.Join(cols, ", ")
}
