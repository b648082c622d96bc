package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// TestBackfillFeatureServiceFlag: `backfill --feature-service` writes the
// service's features as columns and records the service in the manifest;
// with --features too, or an unknown name, it is a usage error (exit 2).
func TestBackfillFeatureServiceFlag(t *testing.T) {
	f := newProduceFixture(t)
	events := f.input(t, "events.jsonl", txnLine("u-1", 10), txnLine("u-1", 30), txnLine("u-2", 5))
	if code, _, stderr := execCLI("produce", "--brokers", f.brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 {
		t.Fatalf("produce: exit %d: %s", code, stderr)
	}
	spine := f.input(t, "spine.csv", "user_id,timestamp", "u-1,2023-11-15T00:00:00Z", "u-2,2023-11-15T00:00:00Z", "u-3,2023-11-15T00:00:00Z")
	out := filepath.Join(f.dir, "train.csv")
	base := []string{"backfill", "--brokers", f.brokers, "--config", f.config, "--spine", spine, "--out", out}

	code, stdout, stderr := execCLI(append(base, "--feature-service", "fraud_scoring")...)
	if code != 0 {
		t.Fatalf("backfill --feature-service: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "feature service fraud_scoring: txn_count_7d (txn_count_7d@1), txn_amount_sum_1h (txn_amount_sum_1h@1), txn_amount_max_7d (txn_amount_max_7d@1), txn_amount_min_7d (txn_amount_min_7d@1)") {
		t.Errorf("stdout does not list the service's columns and versions:\n%s", stdout)
	}
	file, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	rows, err := csv.NewReader(file).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []string{"user_id", "timestamp", "txn_count_7d", "txn_amount_sum_1h", "txn_amount_max_7d", "txn_amount_min_7d"}
	if len(rows) != 4 || !slices.Equal(rows[0], wantCols) {
		t.Fatalf("output %v; want header %v and 3 rows", rows, wantCols)
	}
	if got := rows[1][2:]; !slices.Equal(got, []string{"2", "0", "30", "10"}) {
		t.Errorf("u-1: %v, want count 2, sum over the last hour 0, max 30, min 10", got)
	}
	data, err := os.ReadFile(backfill.ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}
	var m backfill.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.FeatureService != "fraud_scoring" || len(m.Features) != 4 || m.Features[0].Name != "txn_count_7d" || m.Features[0].Version != 1 || m.Features[0].Hash == "" {
		t.Errorf("manifest: service %q, features %+v", m.FeatureService, m.Features)
	}

	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"both flags", []string{"--feature-service", "fraud_scoring", "--features", "txn_count_7d"}, "give either features or a feature service, not both"},
		{"unknown service", []string{"--feature-service", "fraud"}, `unknown feature service "fraud"; did you mean "fraud_scoring"? feature services: fraud_scoring, spending_profile`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := execCLI(append(base, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 saying %q", code, stderr, tc.msg)
			}
		})
	}
}

// TestFeaturesServices: `features --services` lists each service's
// features, a bare name resolved as lookups resolve it: with --brokers the
// newest ready version (here @1 while @2 warms up, then @2), without them
// the newest version, status unknown.
func TestFeaturesServices(t *testing.T) {
	f := newProduceFixture(t)
	extra := "  - {name: txn_amount_max_7d, version: 2, entity: user, source: transactions, aggregation: max, field: amount, window: 7d, hop: 1d, owner: fraud-team, description: Coarser hop.}\n"
	cfg, cl := f.catalog(t, extra)
	ctx := context.Background()
	topic := cfg.Kafka.RegistryTopic
	if err := registry.Register(ctx, cl, topic, cfg, registry.NewView(), "test"); err != nil {
		t.Fatal(err)
	}
	setMax2 := func(state string) {
		r, err := registry.StatusRecord(topic, registry.Status{Feature: "txn_amount_max_7d@2", Topic: "transactions", Partition: 0, State: state, UpdatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	services := func(args ...string) map[string]serviceInfo {
		t.Helper()
		code, stdout, stderr := execCLI(append([]string{"features", "--services", "--json", "--config", f.config}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var rows []serviceInfo
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		by := map[string]serviceInfo{}
		for _, r := range rows {
			by[r.Name] = r
		}
		if len(rows) != len(cfg.Services) {
			t.Fatalf("%d services listed, want %d", len(rows), len(cfg.Services))
		}
		return by
	}
	// fraud_scoring lists txn_count_7d@1, txn_amount_sum_1h@1, txn_amount_max_7d, txn_amount_min_7d.
	check := func(what string, got serviceInfo, maxID, status string) {
		t.Helper()
		want := []serviceFeature{
			{Ref: "txn_count_7d@1", ID: "txn_count_7d@1", Version: 1, Status: status},
			{Ref: "txn_amount_sum_1h@1", ID: "txn_amount_sum_1h@1", Version: 1, Status: status},
			{Ref: "txn_amount_max_7d", ID: maxID, Version: int(maxID[len(maxID)-1] - '0'), Status: status},
			{Ref: "txn_amount_min_7d", ID: "txn_amount_min_7d@1", Version: 1, Status: status},
		}
		if !slices.Equal(got.Features, want) || got.Entity != "user" || got.Owner != "fraud-team" || !slices.Equal(got.Models, []string{"fraud-gbm"}) {
			t.Errorf("%s: %+v\nwant features %+v", what, got, want)
		}
	}
	check("without --brokers", services()["fraud_scoring"], "txn_amount_max_7d@2", "unknown")
	setMax2(registry.StateWarmingUp)
	check("while @2 warms up", services("--brokers", f.brokers)["fraud_scoring"], "txn_amount_max_7d@1", registry.StateReady)
	code, stdout, _ := execCLI("features", "--services", "--config", f.config, "--brokers", f.brokers)
	if code != 0 || !strings.Contains(stdout, "txn_amount_max_7d (@1)") || !strings.Contains(stdout, "spending_profile") {
		t.Errorf("table:\n%s", stdout)
	}
	setMax2(registry.StateReady)
	check("once @2 is ready", services("--brokers", f.brokers)["fraud_scoring"], "txn_amount_max_7d@2", registry.StateReady)

	// A worker running another file recorded a service this file lacks:
	// with --brokers it is listed after the file's, as recorded.
	view, err := registry.Load(ctx, kafka.Conn{Brokers: []string{f.brokers}}, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := *cfg
	other.Services = append(slices.Clone(cfg.Services), &config.Service{Name: "shadow", Owner: "shadow-team", Entity: "user", Features: []string{"txn_amount_max_7d"}})
	if err := registry.RecordFile(ctx, cl, topic, &other, view, "test"); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := execCLI("features", "--services", "--json", "--config", f.config, "--brokers", f.brokers)
	var rows []serviceInfo
	if err := json.Unmarshal([]byte(stdout), &rows); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s", code, err, stderr)
	}
	last := rows[len(rows)-1]
	if len(rows) != len(cfg.Services)+1 || last.Name != "shadow" || last.Origin != "registry" || last.Owner != "shadow-team" ||
		!slices.Equal(last.Features, []serviceFeature{{Ref: "txn_amount_max_7d", ID: "txn_amount_max_7d@2", Version: 2, Status: registry.StateReady}}) {
		t.Errorf("services with the catalog's: %+v", rows)
	}
	if rows[0].Origin != "file" {
		t.Errorf("a service of the file has origin %q", rows[0].Origin)
	}
}
