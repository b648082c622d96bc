package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// datasetBaseline is the prefix of a --baseline naming a catalog dataset.
const datasetBaseline = "dataset:"

// weekBaseline is the --baseline entry of the week-earlier comparison
// (monitor.LiveOptions.Week).
const weekBaseline = "week"

// statsFlags are the worker's feature-statistics flags.
type statsFlags struct {
	sample    *float64
	window    *time.Duration
	long      *time.Duration
	baselines *string
}

func addStatsFlags(fs *flag.FlagSet) *statsFlags {
	return &statsFlags{
		sample: fs.Float64("stats-sample", 1, "fraction of published feature values observed for statistics and drift (0: statistics off)"),
		window: fs.Duration("stats-window", time.Hour, "rolling window of the feature statistics (featurepipe_feature_null_rate, drift)"),
		long:   fs.Duration("stats-long-window", 24*time.Hour, "a second, longer rolling window of the feature statistics, for GET /v1/stats and featurepipe monitor (0: none)"),
		baselines: fs.String("baseline", "", "comma-separated drift baselines (featurepipe_feature_drift_psi/ks), each dataset:NAME@V (a dataset in the catalog) "+
			"or a backfill manifest (OUT.manifest.json); a later one wins for a feature in several, and features in none get no drift. "+
			"Default: per feature version, the newest dataset in the catalog with its statistics (datasets registered later are picked up). "+
			"Add "+weekBaseline+" to also compare every version's last 24h with the same 24h a week earlier (baseline=\""+monitor.WeekBaselineName+"\"; hourly statistics kept 8 days in the worker's store)"),
	}
}

// catalogAt is where the worker reads the dataset catalog: the registry
// topic of its feature file.
type catalogAt struct {
	conn  kafka.Conn
	topic string
	log   *zap.Logger
}

// live builds the statistics the flags ask for (nil with --stats-sample 0),
// registered on r; hours keeps the week baseline's hourly statistics (may
// be nil: kept in memory only). The --baseline entry "week" adds the
// week-earlier comparison, next to the dataset baselines of the other
// entries (or, with none, the default). With --baseline it reads the baselines now (the
// catalog once, up to its end, for dataset:NAME@V) and fails naming the
// flag when one is missing or has no statistics. Without it, follow is
// non-nil: it keeps a catalog view current until ctx ends (run it as a
// component), and each feature version's baseline is the newest dataset in
// that view with its statistics.
func (f *statsFlags) live(ctx context.Context, r prometheus.Registerer, cat catalogAt, hours monitor.HourStore) (live *monitor.Live, follow func(context.Context) error, err error) {
	if *f.sample == 0 {
		if *f.baselines != "" {
			return nil, nil, usagef("--baseline needs statistics: --stats-sample must be above 0")
		}
		return nil, nil, nil
	}
	o := monitor.LiveOptions{Window: *f.window, Sample: *f.sample, LongWindow: *f.long}
	if *f.long == 0 {
		o.LongWindow = -1 // none
	}
	var datasets []string
	for _, arg := range strings.Split(*f.baselines, ",") {
		switch arg = strings.TrimSpace(arg); arg {
		case "":
		case weekBaseline:
			o.Week, o.Hours = true, hours
			o.OnError = func(err error) {
				cat.log.Warn("saving the hourly feature statistics failed (the week baseline may miss the last minutes after a restart)", zap.Error(err))
			}
		default:
			datasets = append(datasets, arg)
		}
	}
	if len(datasets) > 0 {
		if o.Baselines, err = readBaselines(ctx, strings.Join(datasets, ","), cat); err != nil {
			return nil, nil, err
		}
	} else {
		view := registry.NewView()
		o.Resolve = func(id string) (monitor.Baseline, bool) { return datasetBaselineOf(view, id) }
		follow = func(ctx context.Context) error {
			return registry.Follow(ctx, cat.conn, cat.topic, view, cat.log, nil)
		}
	}
	live, err = monitor.NewLive(r, o)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return live, follow, nil
}

// datasetBaselineOf is the default baseline of feature version id: the
// newest dataset in v with its statistics, named NAME@V.
func datasetBaselineOf(v *registry.View, id string) (monitor.Baseline, bool) {
	d, ok := v.NewestDatasetWith(id)
	if !ok {
		return monitor.Baseline{}, false
	}
	return monitor.Baseline{Name: d.ID(), Stats: d.Statistics[id]}, true
}

// readBaselines reads the comma-separated --baseline list: dataset:NAME@V
// from the catalog at cat (read once, bounded by 30s), anything else as a
// manifest path. A later entry wins for a feature in several.
func readBaselines(ctx context.Context, list string, cat catalogAt) (map[string]monitor.Baseline, error) {
	var view *registry.View
	baselines := map[string]monitor.Baseline{}
	for _, arg := range strings.Split(list, ",") {
		if arg = strings.TrimSpace(arg); arg == "" {
			continue
		}
		var got map[string]monitor.Baseline
		if ref, ok := strings.CutPrefix(arg, datasetBaseline); ok {
			if view == nil {
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				v, err := registry.Load(lctx, cat.conn, cat.topic, cat.log)
				cancel()
				if err != nil {
					return nil, fmt.Errorf("--baseline %s: read the dataset catalog: %w", arg, err)
				}
				view = v
			}
			var err error
			if got, err = catalogBaselines(view, ref); err != nil {
				return nil, usagef("--baseline %s: %v", arg, err)
			}
		} else {
			m, err := backfill.ReadManifest(arg)
			if err != nil {
				return nil, fmt.Errorf("--baseline %s: %w (a manifest path, or dataset:NAME@V for a dataset in the catalog)", arg, err)
			}
			got = m.Baselines(strings.TrimSuffix(filepath.Base(arg), ".manifest.json"))
			if len(got) == 0 {
				return nil, usagef("--baseline %s: the manifest has no feature statistics (written by an older featurepipe? run the backfill again)", arg)
			}
		}
		for id, b := range got {
			baselines[id] = b
		}
	}
	return baselines, nil
}

// catalogBaselines returns the statistics of every feature of the dataset
// ref (NAME@V) in v as baselines named NAME@V; an error says what is
// missing: a bad ref, the dataset or version, or its statistics.
func catalogBaselines(v *registry.View, ref string) (map[string]monitor.Baseline, error) {
	name, _, err := registry.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	d, ok := v.Dataset(ref)
	if !ok {
		var versions []string
		for _, d := range v.Datasets() {
			if d.Name == name {
				versions = append(versions, d.ID())
			}
		}
		if len(versions) == 0 {
			return nil, fmt.Errorf("no dataset %s in the catalog (featurepipe datasets lists them)", name)
		}
		slices.Reverse(versions) // oldest first
		return nil, fmt.Errorf("dataset %s %w (registered versions: %s)", ref, registry.ErrNotFound, strings.Join(versions, ", "))
	}
	out := map[string]monitor.Baseline{}
	for id, s := range d.Statistics {
		if s != nil {
			out[id] = monitor.Baseline{Name: d.ID(), Stats: s}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the dataset has no feature statistics in the catalog (registered by an older featurepipe? run its backfill again)")
	}
	return out, nil
}
