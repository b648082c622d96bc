package main

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
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
