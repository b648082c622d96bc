package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/skew"
)

// runSkew prints the skew report and fails (exit 1) when any served value
// differs from its recomputation, so CI can gate on it.
func runSkew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("skew", "--brokers B --config F [--since T] [--mode event|arrival] [--examples N] [--json]", stderr)
	bf := addBatchFlags(fs, "feature file (YAML), the one the workers and lookup service run with",
		"mode", "point-in-time rule of the recomputation: event (event time < at) or arrival (also arrived <= at: what serving could see)")
	since := fs.String("since", "", "only lookups logged at or after this time (RFC 3339 or epoch ms); default: the whole lookup log")
	examples := fs.Int("examples", skew.DefaultExamples, "mismatching examples to show per feature")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	tolerance := fs.Float64("tolerance", skew.DefaultTolerance, "relative difference below which two numbers match")
	b, err := bf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer b.log.Sync()
	var sinceT time.Time
	if *since != "" {
		ms, err := backfill.ParseTime(*since)
		if err != nil {
			return usagef("--since: %v", err)
		}
		sinceT = time.UnixMilli(ms)
	}
	if *examples < 0 {
		return usagef("--examples must not be negative")
	}
	if *examples == 0 {
		*examples = -1 // skew.Options: 0 means the default
	}
	rep, err := skew.Run(ctx, skew.Options{
		Brokers: b.brokers, Config: b.cfg, Since: sinceT, Mode: b.mode, Examples: *examples, Tolerance: *tolerance,
		Limits: b.limits, Log: b.log, Progress: stderr,
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
