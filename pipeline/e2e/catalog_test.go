package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// cli runs the featurepipe binary and returns its exit code, stdout and
// stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	default:
		t.Fatalf("featurepipe %s: %v", strings.Join(args, " "), err)
		return 0, "", ""
	}
}

// TestCatalogDatasetsAndModels: a worker registers the feature versions,
// two backfills through a feature service register two versions of one
// dataset, a model is registered on the first (idempotently, and refused
// when changed), and `datasets --json`, `models --json` and `history
// --json` show exactly what was recorded.
func TestCatalogDatasetsAndModels(t *testing.T) {
	k, cfg, cl := setup(t, featureFile+servicesBlock)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 500, 20, 10*24*time.Hour, now), newProduced())
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Actor: "alice", InstanceID: "w1"}, filepath.Join(dir, "w"))
	brokers := strings.Join(k.Brokers, ",")
	topic := cfg.Kafka.RegistryTopic

	// The worker registers every feature version it runs.
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, err := registry.Load(ctx, kafka.Conn{Brokers: k.Brokers}, topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := v.Definition("txn_count_7d@1"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not register txn_count_7d@1 within 90s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	spine := filepath.Join(dir, "spine.csv")
	var sb strings.Builder
	sb.WriteString("user_id,timestamp,label\n")
	t0 := now.Add(-48 * time.Hour).UTC().Truncate(time.Second)
	for i := range 10 {
		fmt.Fprintf(&sb, "user-%03d,%s,%d\n", i, t0.Add(time.Duration(i)*time.Hour).Format(time.RFC3339), i%2)
	}
	if err := os.WriteFile(spine, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "train_2026_11.csv")
	backfillArgs := []string{"backfill", "--brokers", brokers, "--config", cfg.Path, "--spine", spine, "--out", out,
		"--feature-service", "fraud_scoring", "--owner", "fraud-team", "--description", "November training set"}
	for i, want := range []string{"train_2026_11@1", "train_2026_11@2"} {
		code, stdout, stderr := cli(t, backfillArgs...)
		if code != 0 || !strings.Contains(stdout, "registered in the catalog as dataset "+want) {
			t.Fatalf("backfill %d: exit %d\n%s%s\nwant it registered as %s", i+1, code, stdout, stderr, want)
		}
		man, err := backfill.ReadManifest(backfill.ManifestPath(out))
		if err != nil {
			t.Fatal(err)
		}
		if man.Dataset != want {
			t.Fatalf("manifest records dataset %q, want %q", man.Dataset, want)
		}
	}
	man, err := backfill.ReadManifest(backfill.ManifestPath(out))
	if err != nil {
		t.Fatal(err)
	}

	register := []string{"models", "register", "--brokers", brokers, "--config", cfg.Path, "--name", "fraud-gbm", "--version", "3",
		"--dataset", "train_2026_11@1", "--service", "fraud_scoring", "--metric", "auc=0.912", "--metric", "logloss=0.31",
		"--owner", "fraud-team", "--description", "card fraud GBM", "--limitations", "card-present only", "--uri", "s3://models/fraud-gbm/3"}
	if code, stdout, stderr := cli(t, register...); code != 0 || !strings.Contains(stdout, "model fraud-gbm@3 registered") {
		t.Fatalf("models register: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := cli(t, register...); code != 0 || !strings.Contains(stdout, "already registered with the same content") {
		t.Fatalf("models register again, identical: exit %d\n%s%s; want an idempotent success", code, stdout, stderr)
	}
	changed := append(append([]string{}, register[:len(register)-2]...), "--uri", "s3://models/other")
	if code, _, stderr := cli(t, changed...); code != 1 || !strings.Contains(stderr, "model version already registered with different content") ||
		!strings.Contains(stderr, "uri: registered s3://models/fraud-gbm/3, now s3://models/other") {
		t.Fatalf("models register, changed: exit %d\n%s; want exit 1 naming the difference", code, stderr)
	}
	for _, bad := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--dataset", "train_2026_11@9"}, 1, "dataset train_2026_11@9 is not in the catalog"},
		{[]string{"--service", "nope"}, 1, "feature service nope is not in the catalog"},
		{[]string{"--metric", "auc"}, 2, `metric "auc": want name=value`},
	} {
		args := append(append([]string{}, register...), bad.args...)
		args[9] = "4" // --version 4: a new version, so only the bad flag can fail
		if code, _, stderr := cli(t, args...); code != bad.code || !strings.Contains(stderr, bad.msg) {
			t.Errorf("models register %v: exit %d\n%s; want exit %d saying %q", bad.args, code, stderr, bad.code, bad.msg)
		}
	}

	// datasets --json: newest first, every recorded field.
	code, stdout, stderr := cli(t, "datasets", "--brokers", brokers, "--config", cfg.Path, "--json")
	if code != 0 {
		t.Fatalf("datasets: exit %d\n%s", code, stderr)
	}
	var ds []registry.Dataset
	if err := json.Unmarshal([]byte(stdout), &ds); err != nil {
		t.Fatalf("datasets --json: %v\n%s", err, stdout)
	}
	if len(ds) != 2 || ds[0].ID() != "train_2026_11@2" || ds[1].ID() != "train_2026_11@1" {
		t.Fatalf("datasets %+v, want train_2026_11@2 then @1", ds)
	}
	svc, err := cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	d := ds[1]
	if d.Service != "fraud_scoring" || d.Owner != "fraud-team" || d.Description != "November training set" || d.Entity != "user" ||
		d.Rows != 10 || d.PointInTime != "event" || d.Location != out || d.Format != "csv" || d.SpinePath != spine ||
		d.SpineSHA256 != man.Spine.SHA256 || d.Actor != registry.OSUser() || d.CreatedAt.IsZero() || d.Config != cfg.Path {
		t.Fatalf("dataset recorded as %+v", d)
	}
	if d.TimeRange == nil || !d.TimeRange.Min.Equal(t0) || !d.TimeRange.Max.Equal(t0.Add(9*time.Hour)) {
		t.Fatalf("time range %+v, want %s .. %s", d.TimeRange, t0, t0.Add(9*time.Hour))
	}
	if len(d.Features) != len(svc.Features) {
		t.Fatalf("features %+v, want the service's %v", d.Features, svc.Features)
	}
	for i, ref := range svc.Features {
		f, err := cfg.Feature(ref)
		if err != nil {
			t.Fatal(err)
		}
		if col := man.Features[i].Column; d.Features[i].Feature != f.ID || d.Features[i].Hash != f.Hash || d.Features[i].Column != col {
			t.Fatalf("feature %d recorded as %+v, want %s (hash %s, column %s)", i, d.Features[i], f.ID, f.Hash, col)
		}
	}

	// models --json.
	code, stdout, stderr = cli(t, "models", "--brokers", brokers, "--config", cfg.Path, "--json")
	if code != 0 {
		t.Fatalf("models: exit %d\n%s", code, stderr)
	}
	var ms []registry.Model
	if err := json.Unmarshal([]byte(stdout), &ms); err != nil {
		t.Fatalf("models --json: %v\n%s", err, stdout)
	}
	if len(ms) != 1 {
		t.Fatalf("models %+v, want fraud-gbm@3 only (the refused registrations wrote nothing)", ms)
	}
	m := ms[0]
	if m.ID() != "fraud-gbm@3" || m.Dataset != "train_2026_11@1" || m.Service != "fraud_scoring" ||
		m.Metrics["auc"] != 0.912 || m.Metrics["logloss"] != 0.31 || len(m.Metrics) != 2 || m.Owner != "fraud-team" ||
		m.Description != "card fraud GBM" || m.Limitations != "card-present only" || m.URI != "s3://models/fraud-gbm/3" ||
		m.Actor != registry.OSUser() || m.RegisteredAt.IsZero() || strings.Join(m.ServiceFeatures, ",") != strings.Join(svc.Features, ",") {
		t.Fatalf("model recorded as %+v", m)
	}
	if fmt.Sprint(m.Features) != fmt.Sprint(d.Features) {
		t.Fatalf("model features %+v, want the training dataset's %+v", m.Features, d.Features)
	}

	// The table forms name the same objects.
	if _, stdout, _ := cli(t, "datasets", "--brokers", brokers, "--config", cfg.Path); !strings.Contains(stdout, "train_2026_11@2") ||
		!strings.Contains(stdout, "service fraud_scoring") {
		t.Fatalf("datasets table:\n%s", stdout)
	}
	if _, stdout, _ := cli(t, "models", "--brokers", brokers, "--config", cfg.Path); !strings.Contains(stdout, "fraud-gbm@3") ||
		!strings.Contains(stdout, "auc=0.912,logloss=0.31") {
		t.Fatalf("models table:\n%s", stdout)
	}

	// history: the worker's registration of each version, with its actor.
	code, stdout, stderr = cli(t, "history", "txn_count_7d", "--brokers", brokers, "--config", cfg.Path, "--json")
	if code != 0 {
		t.Fatalf("history: exit %d\n%s", code, stderr)
	}
	var hist []registry.Definition
	if err := json.Unmarshal([]byte(stdout), &hist); err != nil {
		t.Fatal(err)
	}
	f, err := cfg.Feature("txn_count_7d@1")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Feature != "txn_count_7d@1" || hist[0].Hash != f.Hash || hist[0].RegisteredBy != "alice via featurepipe-worker/w1" ||
		hist[0].RegisteredAt.IsZero() || fmt.Sprint(hist[0].Fields) != fmt.Sprint(f.Definition()) {
		t.Fatalf("history %+v", hist)
	}
	if code, stdout, _ := cli(t, "history", "--brokers", brokers, "--config", cfg.Path, "txn_count_7d"); code != 0 ||
		!strings.Contains(stdout, "txn_count_7d@1  registered ") || !strings.Contains(stdout, " by alice via featurepipe-worker/w1  hash "+f.Hash) ||
		!strings.Contains(stdout, "aggregation:") {
		t.Fatalf("history table (FEATURE after the flags): exit %d\n%s", code, stdout)
	}
	if code, _, stderr := cli(t, "history", "no_such_feature", "--brokers", brokers, "--config", cfg.Path); code != 1 ||
		!strings.Contains(stderr, "feature no_such_feature has no registered version") {
		t.Fatalf("history of an unknown feature: exit %d\n%s", code, stderr)
	}
}
