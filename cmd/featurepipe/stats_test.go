package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// uniformStats are the statistics of lo, lo+1, ..., lo+99.
func uniformStats(lo int) *monitor.Stats {
	s := monitor.NewStats()
	for v := range 100 {
		s.AddValue(float64(lo + v))
	}
	return s
}

// TestWorkerBaselines: --baseline dataset:NAME@V takes that dataset's
// statistics from the catalog; without --baseline each feature version is
// compared with the newest dataset that has its statistics, and a dataset
// registered while the worker runs is picked up; a bad NAME@V fails at
// start-up naming the flag and what is missing.
func TestWorkerBaselines(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(1)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
`, testkit.SetupOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		t.Fatal(err)
	}
	topic := cfg.Kafka.RegistryTopic
	cat := catalogAt{conn: kafka.ConnOf(k.Brokers, cfg), topic: topic}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	register := func(name string, at time.Time, stats map[string]*monitor.Stats) string {
		t.Helper()
		d, err := registry.RegisterDataset(ctx, cl, topic, registry.Dataset{Name: name, Entity: "user", CreatedAt: at, Statistics: stats})
		if err != nil {
			t.Fatal(err)
		}
		return d.ID()
	}
	// train@1 has spend@1's live distribution (0..99), train@2 a shifted
	// one; other@1, the newest, has no statistics of spend@1; old@1 none
	// at all (an older featurepipe).
	for _, d := range []struct {
		name  string
		at    time.Time
		stats map[string]*monitor.Stats
	}{
		{"train", t0, map[string]*monitor.Stats{"spend@1": uniformStats(0)}},
		{"train", t0.Add(time.Hour), map[string]*monitor.Stats{"spend@1": uniformStats(1000), "count@1": uniformStats(1000)}},
		{"other", t0.Add(2 * time.Hour), map[string]*monitor.Stats{"count@1": uniformStats(0)}},
		{"old", t0.Add(3 * time.Hour), nil},
	} {
		register(d.name, d.at, d.stats)
	}
	var lastLive *monitor.Live
	start := func(args ...string) (*prometheus.Registry, func(context.Context) error, error) {
		fs := flag.NewFlagSet("worker", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		stf := addStatsFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		live, follow, err := stf.live(ctx, reg, cat, nil)
		if err != nil {
			return nil, nil, err
		}
		lastLive = live
		b := live.NewBatch()
		for _, f := range []string{"spend", "count"} {
			for v := range 100 {
				x := float64(v)
				b.Add(f+"@1", f, 1, &x)
			}
		}
		if err := live.Commit(b); err != nil {
			t.Fatal(err)
		}
		return reg, follow, nil
	}

	// Named datasets: the one named, whatever is newer.
	for _, tc := range []struct {
		flag string
		want map[string]string
	}{
		{"dataset:train@1", map[string]string{"spend@1": "train@1 stable"}},
		{"dataset:train@2", map[string]string{"spend@1": "train@2 drifted", "count@1": "train@2 drifted"}},
		// A later entry wins for a feature in both.
		{"dataset:train@2,dataset:other@1", map[string]string{"spend@1": "train@2 drifted", "count@1": "other@1 stable"}},
	} {
		reg, follow, err := start("--baseline", tc.flag)
		if err != nil {
			t.Fatalf("--baseline %s: %v", tc.flag, err)
		}
		if follow != nil {
			t.Errorf("--baseline %s: follows the catalog, want a fixed baseline", tc.flag)
		}
		if got := testkit.DriftLevels(t, reg); !maps.Equal(got, tc.want) {
			t.Errorf("--baseline %s: drift %v, want %v", tc.flag, got, tc.want)
		}
	}

	// "week" adds the week-earlier comparison to the named datasets (or,
	// alone, to the default).
	for flagValue, wantFollow := range map[string]bool{"dataset:train@1,week": false, "week": true, " week ": true} {
		reg, follow, err := start("--baseline", flagValue)
		if err != nil {
			t.Fatalf("--baseline %s: %v", flagValue, err)
		}
		if (follow != nil) != wantFollow {
			t.Errorf("--baseline %s: follows the catalog %v, want %v", flagValue, follow != nil, wantFollow)
		}
		if snap := lastLive.Snapshot(); len(snap.Features) == 0 || snap.Features[0].Week == nil || snap.Features[0].Week.Current.Count() != 100 {
			t.Errorf("--baseline %s: snapshot %+v, want the week's current values", flagValue, snap.Features)
		}
		if !wantFollow {
			if got := testkit.DriftLevels(t, reg); got["spend@1"] != "train@1 stable" {
				t.Errorf("--baseline %s: drift %v, want spend@1 against train@1 still", flagValue, got)
			}
		}
	}
	if _, _, err := start("--baseline", "dataset:train@1"); err != nil || lastLive.Snapshot().Features[0].Week != nil {
		t.Errorf("without week: %v, a week kept", err)
	}

	// Bad references fail at start-up, naming the flag and what is wrong.
	for flagValue, msg := range map[string]string{
		"dataset:train@9":        "--baseline dataset:train@9: dataset train@9 not in the catalog (registered versions: train@1, train@2)",
		"dataset:nope@1":         "--baseline dataset:nope@1: no dataset nope in the catalog",
		"dataset:train":          `--baseline dataset:train: invalid catalog entry: "train": want name@version`,
		"dataset:old@1":          "--baseline dataset:old@1: the dataset has no feature statistics in the catalog",
		"dataset:train@1,/nope/": "--baseline /nope/: read manifest",
	} {
		_, _, err := start("--baseline", flagValue)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("--baseline %s: error %v, want one saying %q", flagValue, err, msg)
		}
		var u *usageError
		if flagValue != "dataset:train@1,/nope/" && !errors.As(err, &u) {
			t.Errorf("--baseline %s: %T, want a usage error (exit 2)", flagValue, err)
		}
	}

	// Default: per version, the newest dataset with its statistics, from
	// a catalog followed while the worker runs.
	reg, follow, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if follow == nil {
		t.Fatal("no --baseline: nothing follows the catalog")
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- follow(fctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("following the catalog: %v", err)
		}
	}()
	waitDrift := func(want map[string]string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			got := testkit.DriftLevels(t, reg)
			if maps.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("drift %v, want %v", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitDrift(map[string]string{"spend@1": "train@2 drifted", "count@1": "other@1 stable"})
	// A newer dataset with spend@1's live distribution replaces train@2.
	register("train", t0.Add(4*time.Hour), map[string]*monitor.Stats{"spend@1": uniformStats(0)})
	waitDrift(map[string]string{"spend@1": "train@3 stable", "count@1": "other@1 stable"})
}
