package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

// runSkew prints the skew report and fails (exit 1) when any served value
// differs from its recomputation, so CI can gate on it.
func runSkew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("skew", "--brokers B --config F [--since T] [--mode event|arrival] [--examples N] [--json]", stderr)
	brokersFlag := fs.String("brokers", "", "comma-separated Kafka bootstrap brokers")
	cfgPath := fs.String("config", "", "feature file (YAML), the one the workers and lookup service run with")
	since := fs.String("since", "", "only lookups logged at or after this time (RFC 3339 or epoch ms); default: the whole lookup log")
	mode := fs.String("mode", string(backfill.ModeEvent), "point-in-time rule of the recomputation: event (event time < at) or arrival (also arrived <= at: what serving could see)")
	examples := fs.Int("examples", skew.DefaultExamples, "mismatching examples to show per feature")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	tolerance := fs.Float64("tolerance", skew.DefaultTolerance, "relative difference below which two numbers match")
	maxFuture := fs.Duration("max-future", 24*time.Hour, "how far after arrival an event time may be; must match the workers")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "brokers", "config"); err != nil {
		return err
	}
	brokers, err := kafka.ParseBrokers(*brokersFlag)
	if err != nil {
		return usagef("%v", err)
	}
	m, err := backfill.ParseMode(*mode)
	if err != nil {
		return usagef("--mode: %v", err)
	}
	var sinceT time.Time
	if *since != "" {
		if sinceT, err = parseSince(*since); err != nil {
			return usagef("--since: %v", err)
		}
	}
	if *examples < 0 {
		return usagef("--examples must not be negative")
	}
	if *examples == 0 {
		*examples = -1 // skew.Options: 0 means the default
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
	rep, err := skew.Run(ctx, skew.Options{
		Brokers: brokers, Config: cfg, Since: sinceT, Mode: m, Examples: *examples, Tolerance: *tolerance,
		Limits: events.Limits{MaxFuture: *maxFuture}, Log: log, Progress: stderr,
	})
	if err != nil {
		if errors.Is(err, skew.ErrInvalidOptions) {
			return usagef("%v", err)
		}
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	return rep.Err()
}

// parseSince parses RFC 3339 or epoch milliseconds.
func parseSince(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 or epoch milliseconds", s)
	}
	return t, nil
}
