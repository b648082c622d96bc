package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
)

// statsFlags are the worker's feature-statistics flags.
type statsFlags struct {
	sample    *float64
	window    *time.Duration
	baselines *string
}

func addStatsFlags(fs *flag.FlagSet) *statsFlags {
	return &statsFlags{
		sample: fs.Float64("stats-sample", 1, "fraction of published feature values observed for statistics and drift (0: statistics off)"),
		window: fs.Duration("stats-window", time.Hour, "rolling window of the feature statistics (featurepipe_feature_null_rate, drift)"),
		baselines: fs.String("baseline", "", "comma-separated backfill manifests (OUT.manifest.json) whose feature statistics are the drift baselines "+
			"(featurepipe_feature_drift_psi/ks); a later manifest wins for a feature in several"),
	}
}

// live builds the statistics the flags ask for (nil with --stats-sample 0),
// registered on r.
func (f *statsFlags) live(r prometheus.Registerer) (*monitor.Live, error) {
	if *f.sample == 0 {
		if *f.baselines != "" {
			return nil, usagef("--baseline needs statistics: --stats-sample must be above 0")
		}
		return nil, nil
	}
	baselines := map[string]monitor.Baseline{}
	for _, path := range strings.Split(*f.baselines, ",") {
		if path = strings.TrimSpace(path); path == "" {
			continue
		}
		m, err := backfill.ReadManifest(path)
		if err != nil {
			return nil, fmt.Errorf("--baseline: %w", err)
		}
		got := m.Baselines(strings.TrimSuffix(filepath.Base(path), ".manifest.json"))
		if len(got) == 0 {
			return nil, usagef("--baseline %s: the manifest has no feature statistics (written by an older featurepipe? run the backfill again)", path)
		}
		for id, b := range got {
			baselines[id] = b
		}
	}
	live, err := monitor.NewLive(r, monitor.LiveOptions{Window: *f.window, Sample: *f.sample, Baselines: baselines})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return live, nil
}
