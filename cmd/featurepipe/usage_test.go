package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/registry"
)

// TestFeaturesShowsConsumers: two consumers look features up through
// `featurepipe serve` (one through a feature service), and `featurepipe
// features --brokers --json` then shows each version's consumers with their
// counts, read back from the lookup log; the filters select by search text,
// owner, tag and usage.
func TestFeaturesShowsConsumers(t *testing.T) {
	f := newProduceFixture(t)
	cfg, cl := f.catalog(t, "")
	ctx := context.Background()
	// Two versions were registered 60 days ago, the others now.
	for _, id := range []string{"txn_count_7d@1", "login_count_lifetime@1"} {
		ft, err := cfg.Feature(id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := registry.DefinitionRecord(cfg.Kafka.RegistryTopic, registry.Definition{Feature: ft.ID, Hash: ft.Hash,
			Fields: ft.Definition(), RegisteredAt: time.Now().Add(-60 * 24 * time.Hour).UTC(), RegisteredBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	old, err := registry.Load(ctx, kafka.Conn{Brokers: []string{f.brokers}}, cfg.Kafka.RegistryTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Register(ctx, cl, cfg.Kafka.RegistryTopic, cfg, old, "test"); err != nil {
		t.Fatal(err)
	}

	addr := freeAddr(t)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(sctx, []string{"serve", "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir(), "--listen", addr},
			&bytes.Buffer{}, &errOut)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case c := <-done:
			if c != 0 {
				t.Errorf("serve exit %d: %s", c, errOut.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}
	defer stop()
	client := &http.Client{Timeout: 10 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready: %v; %s", err, errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	lookup := func(consumer, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/lookup", strings.NewReader(body))
		if consumer != "" {
			req.Header.Set("X-Featurepipe-Consumer", consumer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: HTTP %d", consumer, body, resp.StatusCode)
		}
	}
	// fraud-api: 2 requests, 3 keys, through the service (txn_count_7d@1 among its features).
	lookup("fraud-api", `{"entity":"user","keys":["u1","u2"],"feature_service":"fraud_scoring"}`)
	lookup("fraud-api", `{"entity":"user","keys":["u3"],"feature_service":"fraud_scoring"}`)
	// reco-api: 1 request, 4 keys, txn_count_7d@1 and txn_amount_avg_30d@1.
	lookup("reco-api", `{"entity":"user","keys":["u1","u2","u3","u4"],"features":["txn_count_7d@1","txn_amount_avg_30d@1"]}`)
	stop() // flushes the lookup log

	rows := featuresJSON(t, "--config", f.config, "--brokers", f.brokers)
	by := map[string]featureInfo{}
	for _, r := range rows {
		by[r.Name] = r
	}
	count := by["txn_count_7d"]
	if count.Usage == nil {
		t.Fatalf("txn_count_7d has no usage: %+v", count)
	}
	got := map[string][2]int64{}
	for _, c := range count.Usage.Consumers {
		got[c.Name] = [2]int64{c.Windows.Week.Lookups, c.Windows.Week.Keys}
	}
	if want := map[string][2]int64{"fraud-api": {2, 3}, "reco-api": {1, 4}}; len(got) != 2 || got["fraud-api"] != want["fraud-api"] || got["reco-api"] != want["reco-api"] {
		t.Fatalf("consumers of txn_count_7d@1 (lookups, keys): %v, want %v", got, want)
	}
	if w := count.Usage.Windows.Hour; w.Lookups != 3 || w.Keys != 7 {
		t.Errorf("txn_count_7d@1 last hour: %+v, want 3 lookups of 7 keys", w)
	}
	if s := count.Usage.Services; len(s) != 1 || s[0].Name != "fraud_scoring" || s[0].Windows.Week.Keys != 3 {
		t.Errorf("services of txn_count_7d@1: %+v", s)
	}
	if count.Registered == nil || time.Since(*count.Registered) < 30*24*time.Hour {
		t.Fatalf("txn_count_7d@1 should read as registered 60 days ago: %v", count.Registered)
	}
	if time.Since(count.Usage.LastUsed) > 10*time.Minute || count.Unused == nil || *count.Unused {
		t.Errorf("txn_count_7d@1: last used %v, unused %v", count.Usage.LastUsed, count.Unused)
	}
	if login := by["login_count_lifetime"]; login.Usage != nil || login.Unused == nil || !*login.Unused {
		t.Errorf("login_count_lifetime (never read, registered 60 days ago: unused): %+v", login)
	}
	if last := by["txn_amount_last"]; last.Usage != nil || last.Unused == nil || *last.Unused {
		t.Errorf("txn_amount_last (never read, registered just now: not yet unused): %+v", last)
	}
	// The table shows the consumers column.
	code, stdout, stderr := execCLI("features", "--config", f.config, "--brokers", f.brokers)
	if code != 0 || !strings.Contains(stdout, "reco-api(4), fraud-api(3)") || !strings.Contains(stdout, "LAST USED") ||
		!regexp.MustCompile(`login_count_lifetime@1 .* unused +never`).MatchString(stdout) {
		t.Fatalf("table (exit %d, %s):\n%s", code, stderr, stdout)
	}
	// Filters.
	names := func(args ...string) string {
		var out []string
		for _, r := range featuresJSON(t, append([]string{"--config", f.config}, args...)...) {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--search", "LARGEST"}, "txn_amount_max_7d"},                                                                               // description
		{[]string{"--search", "identity"}, "login_outcomes_1d,login_last_at,login_first_success,login_recent_outcomes,login_count_lifetime"}, // owner and tag
		{[]string{"--search", "min_7"}, "txn_amount_min_7d"},                                                                                 // name
		{[]string{"--owner", "Fraud-Team"}, "txn_amount_max_7d,txn_amount_min_7d,txn_amount_last_fresh,txn_spend_ratio_1h_30d"},              // owner, any case
		{[]string{"--tag", "fraud", "--owner", "payments-team"}, "txn_amount_sum_1h"},                                                        // both
		{[]string{"--search", "nothing-matches"}, ""},                                                                                        // none
		{[]string{"--brokers", f.brokers, "--unused"}, "login_count_lifetime"},                                                               // the others are read or younger than 30 days
	} {
		if got := names(tc.args...); got != tc.want {
			t.Errorf("features %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	if code, _, stderr := execCLI("features", "--config", f.config, "--unused"); code != 2 || !strings.Contains(stderr, "--unused needs --brokers") {
		t.Errorf("--unused without --brokers: exit %d, %s", code, stderr)
	}
}

func featuresJSON(t *testing.T, args ...string) []featureInfo {
	t.Helper()
	code, stdout, stderr := execCLI(append([]string{"features", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("features %v: exit %d: %s", args, code, stderr)
	}
	var rows []featureInfo
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	return rows
}

func TestServeRejectsABadMaxConsumers(t *testing.T) {
	f := newProduceFixture(t)
	code, _, stderr := execCLI("serve", "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--max-consumers", "0")
	if code != 2 || !strings.Contains(stderr, "--max-consumers must be at least 1") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// The memory bounds of workers and replicas are flags; a bound that would
// hold nothing is refused, naming the flag.
func TestMemoryBoundFlagsRejectBadValues(t *testing.T) {
	f := newProduceFixture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--metrics", "", "--max-cached-entities", "0"}, "--max-cached-entities (0) and --state-cache-mb (64) must be at least 1"},
		{[]string{"worker", "--metrics", "", "--state-cache-mb", "0"}, "--max-cached-entities (50000) and --state-cache-mb (0) must be at least 1"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--cache-entries", "-1"}, "--cache-entries (-1) must be at least 0"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--state-cache-mb", "0"}, "--state-cache-mb (0) at least 1"},
	} {
		args := append(tc.args, "--brokers", f.brokers, "--config", f.config, "--data", t.TempDir())
		code, _, stderr := execCLI(args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
