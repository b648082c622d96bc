package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/featurepipe/featurepipe/internal/testkit"
)

func TestFeastRepoCommand(t *testing.T) {
	demo := filepath.Join("..", "..", "schemas", "demo.yaml")
	out := filepath.Join(t.TempDir(), "repo")
	t.Run("writes the repository", func(t *testing.T) {
		code, stdout, stderr := execCLI("feast-repo", "--config", demo, "--out", out, "--url", "http://127.0.0.1:8080", "--flight", "127.0.0.1:8815")
		if code != 0 || !strings.Contains(stdout, "feast apply") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		yaml, err := os.ReadFile(filepath.Join(out, "feature_store.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"type: remote\n  path: http://127.0.0.1:8080", "type: remote\n  host: 127.0.0.1\n  port: 8815"} {
			if !strings.Contains(string(yaml), want) {
				t.Errorf("feature_store.yaml lacks %q:\n%s", want, yaml)
			}
		}
		py, err := os.ReadFile(filepath.Join(out, "featurepipe_features.py"))
		if err != nil || !strings.Contains(string(py), `join_keys=["user_id"]`) {
			t.Fatalf("definitions: %v\n%s", err, py)
		}
		for _, want := range []string{`name="fraud_scoring"`, `name="spending_profile"`} {
			if !strings.Contains(string(py), want) {
				t.Errorf("definitions lack the demo's feature service %s:\n%s", want, py)
			}
		}
		if stderr != "" {
			t.Errorf("unexpected stderr:\n%s", stderr)
		}
	})
	t.Run("warns of a service the views cannot express", func(t *testing.T) {
		cfg := testkit.WriteConfig(t, `kafka:
  feature_log_topic: features
entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions, schema: transaction.avsc, event_time: ts}
features:
  - {name: txn_count, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: t, description: d}
  - {name: txn_count, version: 2, entity: user, source: transactions, aggregation: count, window: 1d, owner: t, description: d}
services:
  - {name: old_model, owner: t, description: d, features: [txn_count@1]}
`, nil)
		code, _, stderr := execCLI("feast-repo", "--config", cfg.Path, "--out", t.TempDir(), "--url", "http://127.0.0.1:8080", "--flight", "127.0.0.1:8815")
		want := "warning: feature service old_model is not generated: it lists txn_count@1, but feature view transactions's field txn_count reads txn_count@2"
		if code != 0 || !strings.Contains(stderr, want) {
			t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, stderr, want)
		}
	})
	for name, tc := range map[string]struct {
		args []string
		msg  string
	}{
		"--flight is required":   {[]string{"--config", demo, "--out", out, "--url", "http://x:1"}, "--flight is required"},
		"a URL without scheme":   {[]string{"--config", demo, "--out", out, "--url", "x:1", "--flight", "x:2"}, `lookup URL "x:1": want http://host:port`},
		"a missing feature file": {[]string{"--config", "nope.yaml", "--out", out, "--url", "http://x:1", "--flight", "x:2"}, "nope.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := execCLI(append([]string{"feast-repo"}, tc.args...)...)
			if code == 0 || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, stderr, tc.msg)
			}
		})
	}
}
