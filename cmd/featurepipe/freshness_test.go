package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// `featurepipe load --freshness` against a running `featurepipe dev`: every
// probe becomes visible through the lookup API (its count reaches the
// probe's number) and the report gives the percentiles. A pipeline that
// never showed the probes would fail the run ("not visible within").
func TestLoadFreshnessAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("starts featurepipe dev")
	}
	listenAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	devDone := make(chan int, 1)
	var devOut, devErr bytes.Buffer
	go func() {
		devDone <- run(ctx, []string{"dev", "--listen", listenAddr, "--kafka", kafkaAddr, "--users", "5", "--rate", "20", "--log-level", "error"}, &devOut, &devErr)
	}()
	defer func() {
		cancel()
		if code := <-devDone; code != 0 {
			t.Errorf("dev exited %d: %s", code, devErr.String())
		}
	}()
	base := "http://" + listenAddr
	deadline := time.Now().Add(time.Minute)
	for {
		var resp lookup.LookupResponse
		status, err := postLookup(ctx, base, lookup.LookupRequest{Entity: "user", Keys: []string{"u0001"}, Features: []string{freshnessFeature}}, &resp)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("featurepipe dev not ready after a minute: %v (HTTP %d); %s", err, status, devErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, stdout, stderr := execCLI("load", "--freshness", "--url", base, "--brokers", kafkaAddr,
		"--rate", "300", "--duration", "2s", "--warmup", "0s", "--keys", "5", "--probe-interval", "50ms")
	if code != 0 {
		t.Fatalf("load --freshness exited %d: %s\n%s", code, stderr, stdout)
	}
	t.Log(stdout)
	for _, want := range []string{" 0 not visible", "producer ack → visible", "p99"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the report lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, " 0 measured") {
		t.Errorf("no probe was measured:\n%s", stdout)
	}
}

func TestLoadFreshnessFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--freshness", "--url", "http://127.0.0.1:1"}, "needs --brokers"},
		{[]string{"load", "--freshness", "--brokers", "127.0.0.1:1"}, "--brokers needs --url"},
		{[]string{"load", "--brokers", "127.0.0.1:1"}, "apply to --freshness only"},
		{[]string{"load", "--fixed-publish-interval"}, "apply to --freshness only"},
		{[]string{"load", "--config", "../../schemas/history.yaml"}, "apply to --freshness only"},
		{[]string{"load", "--freshness", "--url", "http://127.0.0.1:1", "--brokers", "127.0.0.1:1", "--fixed-publish-interval"}, "not with --url"},
		{[]string{"load", "--freshness", "--baseline"}, "exclude each other"},
		{[]string{"load", "--freshness", "--probe-interval", "0s"}, "--probe-interval must be positive"},
	} {
		code, _, stderr := execCLI(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// The probe is looked up by a count over transactions without where, of an
// entity keyed by user_id alone: txn_count_7d in the demo file, else the
// longest window (issue 18's file: the lifetime count). A file without one
// is refused before anything starts, naming what it needs; a file that does
// not load is refused naming it.
func TestFreshnessProbeFeature(t *testing.T) {
	demo, err := loadFreshnessConfig("")
	if err != nil {
		t.Fatal(err)
	}
	history, err := loadFreshnessConfig("../../schemas/history.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *config.File
		want string
	}{{"demo", demo, freshnessFeature}, {"history", history, "txn_count_life"}} {
		f, err := probeFeature(tc.cfg)
		if err != nil || f.Name != tc.want || f.Entity != "user" {
			t.Errorf("%s: probe feature %v, %v; want %s of user", tc.name, f, err, tc.want)
		}
	}

	dir := t.TempDir()
	schema, err := os.ReadFile("../../schemas/transaction.avsc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "transaction.avsc"), schema, 0o644); err != nil {
		t.Fatal(err)
	}
	// Only a filtered count, a sum and a merchant count: none shows every
	// probe of one user.
	noProbe := `entities:
  - {name: user, key: user_id}
  - {name: merchant, key: merchant_id}
sources:
  - {name: transactions, topic: transactions, schema: transaction.avsc, event_time: ts, entity: user}
features:
  - {name: big_count_1d, version: 1, entity: user, source: transactions, aggregation: count, window: 1d, where: "amount > 100.0", owner: t, description: d}
  - {name: sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: merchant_count_1d, version: 1, entity: merchant, source: transactions, aggregation: count, window: 1d, owner: t, description: d}
`
	path := filepath.Join(dir, "noprobe.yaml")
	if err := os.WriteFile(path, []byte(noProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadFreshnessConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := probeFeature(cfg); err == nil || !strings.Contains(err.Error(), "a count over source transactions, without where") {
		t.Errorf("probe feature of %s: %v, %v; want an error naming what it needs", path, f, err)
	}
	code, _, stderr := execCLI("load", "--freshness", "--config", path, "--duration", "1s")
	if code != 1 || !strings.Contains(stderr, "without where") {
		t.Errorf("load --freshness --config %s: exit %d, %q; want 1 and the probe feature's requirement", path, code, stderr)
	}
	missing := filepath.Join(dir, "missing.yaml")
	code, _, stderr = execCLI("load", "--freshness", "--config", missing, "--duration", "1s")
	if code != 1 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("load --freshness --config %s: exit %d, %q; want 1 naming the file", missing, code, stderr)
	}
}
