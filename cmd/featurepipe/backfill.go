package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backfill", "--brokers B --config F --spine spine.csv|.parquet --out train.parquet|.csv [--features a,b,name@2]", stderr)
	brokersFlag := fs.String("brokers", "", "comma-separated Kafka bootstrap brokers")
	cfgPath := fs.String("config", "", "feature file (YAML)")
	spinePath := fs.String("spine", "", "spine: .csv or .parquet with the entity key column, a timestamp column (RFC 3339 or epoch ms) and any label columns")
	out := fs.String("out", "", "output .parquet or .csv; the manifest goes to <out>.manifest.json")
	features := fs.String("features", "", "comma-separated features (name or name@version); default: every feature of the spine's entity")
	mode := fs.String("point-in-time", string(backfill.ModeEvent), "event: events with event time < T; arrival: also arrived (Kafka timestamp) <= T")
	skipBad := fs.Bool("skip-bad-rows", false, "drop spine rows with a missing key or bad timestamp instead of failing")
	export := fs.String("export-events", "", "also write the replayed events of the spine's entities to this .parquet file (benchmarks)")
	maxFuture := fs.Duration("max-future", 24*time.Hour, "how far after arrival an event time may be; must match the workers")
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
	man, err := backfill.Run(ctx, backfill.Options{
		Brokers: brokers, Config: cfg, Features: refs, Spine: *spinePath, Out: *out,
		Mode: m, SkipBadRows: *skipBad, Progress: stderr, Log: log, ExportEvents: *export,
		Limits: events.Limits{MaxFuture: *maxFuture},
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
	return nil
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
