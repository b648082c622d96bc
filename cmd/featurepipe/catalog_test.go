package main

import (
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

// Every catalog command has --help (exit 0) and refuses bad usage with exit
// 2 and a message saying what to do.
func TestCatalogCommandsUsage(t *testing.T) {
	for _, cmd := range [][]string{{"datasets"}, {"models"}, {"models", "register"}, {"history"}} {
		code, _, stderr := execCLI(append(cmd, "--help")...)
		if code != 0 || !strings.Contains(stderr, "Usage: featurepipe "+strings.Join(cmd, " ")) || !strings.Contains(stderr, "--brokers") {
			t.Errorf("%v --help: exit %d\n%s", cmd, code, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"datasets"}, "--brokers is required"},
		{[]string{"models", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"history", "--brokers", "127.0.0.1:1"}, "name the feature: featurepipe history FEATURE"},
		{[]string{"history", "a", "b", "--brokers", "127.0.0.1:1"}, "unexpected arguments: b"},
		{[]string{"models", "register", "--brokers", "127.0.0.1:1", "--config", "f.yaml", "--name", "m", "--dataset", "d@1"}, "--service is required"},
		{[]string{"models", "register", "--brokers", "127.0.0.1:1", "--config", "f.yaml", "--name", "m", "--dataset", "d@1", "--service", "s"}, "--version must be a whole number >= 1"},
		{[]string{"models", "register", "--metric", "auc=high"}, `metric "auc=high": the value must be a finite number`},
		{[]string{"models", "register", "--metric", "auc=1", "--metric", "auc=2"}, "metric auc given twice"},
	} {
		code, _, stderr := execCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d\n%s\nwant exit 2 saying %q", tc.args, code, stderr, tc.msg)
		}
	}
}

// The backfill refuses a dataset name that cannot be an id before reading
// anything.
func TestBackfillRefusesABadDatasetName(t *testing.T) {
	cfg := testkit.WriteConfig(t, testkit.KafkaSection(1)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
`, nil)
	code, _, stderr := execCLI("backfill", "--brokers", "127.0.0.1:1", "--config", cfg.Path, "--spine", "s.csv", "--out", "o.csv", "--dataset-name", "my set@2")
	if code != 2 || !strings.Contains(stderr, `dataset name "my set@2"`) {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}
