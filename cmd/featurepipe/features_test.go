package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// TestFeaturesListsStatusFromTheRegistry registers the demo features, marks
// one warming up in one partition and another as published a minute ago,
// then checks what `featurepipe features --json` reports.
func TestFeaturesListsStatusFromTheRegistry(t *testing.T) {
	f := newProduceFixture(t)
	// A deprecated version beside the demo's.
	extra := "  - {name: txn_count_7d, version: 2, entity: user, source: transactions, aggregation: count, window: 7d, hop: 1d, owner: payments-team, description: Coarser hop., deprecated: true, replaced_by: txn_count_7d@1, sunset: 2027-01-31}\n"
	cfg, cl := f.catalog(t, extra)
	ctx := context.Background()
	topic := cfg.Kafka.RegistryTopic
	if err := registry.Register(ctx, cl, topic, cfg, registry.NewView(), "test"); err != nil {
		t.Fatal(err)
	}
	published := time.Now().Add(-time.Minute).UTC()
	for _, s := range []registry.Status{
		{Feature: "txn_amount_avg_30d@1", Topic: "transactions", Partition: 0, State: registry.StateWarmingUp, UpdatedAt: published},
		{Feature: "txn_amount_avg_30d@1", Topic: "transactions", Partition: 1, State: registry.StateReady, UpdatedAt: published},
		{Feature: "txn_count_7d@1", Topic: "transactions", Partition: 0, State: registry.StateReady, UpdatedAt: published},
	} {
		r, err := registry.StatusRecord(topic, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := execCLI("features", "--config", f.config, "--brokers", f.brokers, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []featureInfo
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	by := map[string]featureInfo{}
	for _, r := range rows {
		by[fmt.Sprintf("%s@%d", r.Name, r.Version)] = r
	}
	if len(rows) != len(cfg.Features) {
		t.Fatalf("%d rows, want %d", len(rows), len(cfg.Features))
	}
	avg := by["txn_amount_avg_30d@1"]
	if avg.Status != registry.StateWarmingUp || avg.WarmingUp != 1 || avg.Partitions != 2 || avg.Registered == nil {
		t.Fatalf("avg: %+v", avg)
	}
	if c := by["txn_count_7d@1"]; c.Status != registry.StateReady || c.FreshnessSecs == nil || *c.FreshnessSecs < 59 || *c.FreshnessSecs > 300 {
		t.Fatalf("count@1: %+v", c)
	}
	if d := by["txn_count_7d@2"]; d.Status != "deprecated" || !d.Deprecated || d.Hop != "1d" || d.ReplacedBy != "txn_count_7d@1" || d.Sunset != "2027-01-31" {
		t.Fatalf("count@2: %+v", d)
	}
	// The table form names the partitions warming up.
	code, stdout, _ = execCLI("features", "--config", f.config, "--brokers", f.brokers)
	if code != 0 || !strings.Contains(stdout, "warming_up (1/2 partitions)") || !strings.Contains(stdout, "deprecated → txn_count_7d@1 (sunset 2027-01-31)") {
		t.Fatalf("table:\n%s", stdout)
	}
}

func TestAddSnapshotsPicksTheNewestWithTheSameDefinition(t *testing.T) {
	f := newProduceFixture(t)
	cfg, err := config.Load(f.config)
	if err != nil {
		t.Fatal(err)
	}
	rows := describeFeatures(cfg, nil, time.Now())
	avg := cfg.Features[0]
	older, newer := time.Now().Add(-time.Hour), time.Now()
	ms := []*snapshot.Manifest{ // newest first, as Store.List returns them
		{ID: "new-other-def", CreatedAt: newer, Features: []snapshot.FeatureRef{{ID: avg.ID, Hash: "not-the-current-hash"}}},
		{ID: "old", CreatedAt: older, Features: []snapshot.FeatureRef{{ID: avg.ID, Hash: avg.Hash}}},
	}
	addSnapshots(rows, cfg, ms)
	if rows[0].Snapshot != "old" || rows[0].SnapshotAt == nil {
		t.Fatalf("row of %s: snapshot %q, want the one with its definition", avg.ID, rows[0].Snapshot)
	}
	if rows[1].Snapshot != "" {
		t.Fatalf("a version in no snapshot got %q", rows[1].Snapshot)
	}
}
