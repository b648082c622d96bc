package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backfill", "--brokers B --config F --spine spine.csv|.parquet --out train.parquet|.csv [--features a,b,name@2] [--snapshots DIR]", stderr)
	brokersFlag := fs.String("brokers", "", "comma-separated Kafka bootstrap brokers")
	cfgPath := fs.String("config", "", "feature file (YAML)")
	spinePath := fs.String("spine", "", "spine: .csv or .parquet with the entity key column, a timestamp column (RFC 3339 or epoch ms) and any label columns")
	out := fs.String("out", "", "output .parquet or .csv; the manifest goes to <out>.manifest.json")
	features := fs.String("features", "", "comma-separated features (name or name@version); default: every feature of the spine's entity")
	mode := fs.String("point-in-time", string(backfill.ModeEvent), "event: events with event time < T; arrival: also arrived (Kafka timestamp) <= T")
	skipBad := fs.Bool("skip-bad-rows", false, "drop spine rows with a missing key or bad timestamp instead of failing")
	export := fs.String("export-events", "", "also write the replayed events of the spine's entities to this .parquet file (benchmarks)")
	maxFuture := fs.Duration("max-future", 24*time.Hour, "how far after arrival an event time may be; must match the workers")
	snapDir := fs.String("snapshots", "", "the workers' snapshot directory: start each partition from the newest snapshot taken before the earliest spine time, replaying only the records after it (windows may then exceed the topics' retention)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "brokers", "config", "spine", "out"); err != nil {
		return err
	}
	brokers, err := kafka.ParseBrokers(*brokersFlag)
	if err != nil {
		return usagef("%v", err)
	}
	m, err := backfill.ParseMode(*mode)
	if err != nil {
		return usagef("--point-in-time: %v", err)
	}
	var refs []string
	for _, f := range strings.Split(*features, ",") {
		if f = strings.TrimSpace(f); f != "" {
			refs = append(refs, f)
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log, err := newLogger("console", "warn")
	if err != nil {
		return err
	}
	defer log.Sync()
	if *snapDir != "" {
		// A mistyped directory would silently mean "no snapshots".
		if st, err := os.Stat(*snapDir); err != nil || !st.IsDir() {
			return usagef("--snapshots %s: not a directory", *snapDir)
		}
	}
	snaps, err := openSnapshots(*snapDir, 0)
	if err != nil {
		return err
	}
	man, err := backfill.Run(ctx, backfill.Options{
		Brokers: brokers, Config: cfg, Features: refs, Spine: *spinePath, Out: *out,
		Mode: m, SkipBadRows: *skipBad, Progress: stderr, Log: log, ExportEvents: *export,
		Limits: events.Limits{MaxFuture: *maxFuture}, Snapshots: snaps,
	})
	if err != nil {
		if errors.Is(err, backfill.ErrInvalidOptions) || errors.Is(err, backfill.ErrFormat) {
			return usagef("%v", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "%d rows x %d features written to %s (%d records replayed, %d invalid skipped, %d bad spine rows dropped) in %s; manifest %s\n",
		man.Output.Rows, len(man.Features), man.Output.Path, man.Events.Records, sumCounts(man.Events.Rejected), man.Spine.BadRows,
		time.Duration(man.DurationMS)*time.Millisecond, backfill.ManifestPath(*out))
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
