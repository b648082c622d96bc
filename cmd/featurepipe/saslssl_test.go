package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/schemas"
)

// saslFeatureFile is a feature file whose every Kafka client connects to
// the SASL_SSL listener with SCRAM-SHA-512, the CA from {{CA}}, the
// password from $FP_E2E_KAFKA_PASSWORD; topics and group are unique to the
// run ({{ID}}), as the broker is shared.
const saslFeatureFile = `kafka:
  feature_log_topic: sec-features-{{ID}}
  dead_letter_topic: sec-dlq-{{ID}}
  lookup_log_topic: sec-lookups-{{ID}}
  registry_topic: sec-registry-{{ID}}
  group: sec-workers-{{ID}}
  partitions: 3
  security:
    tls:
      ca_file: {{CA}}
    sasl:
      mechanism: SCRAM-SHA-512
      username: {{USER}}
      password_env: FP_E2E_KAFKA_PASSWORD
entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: sec-transactions-{{ID}}
    schema: transaction.avsc
    event_time: ts
features:
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, owner: sec, description: Transactions in 7 days.}
  - {name: txn_amount_sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: sec, description: Amount in 7 days.}
  - {name: txn_amount_max_7d, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 7d, owner: sec, description: Largest amount in 7 days.}
`

// TestSASLSSLRoundTrip runs featurepipe's commands against the SASL_SSL
// listener of Apache Kafka (make test-kafka): produce → worker → serve
// (lookup over HTTP, lookup log) → backfill → datasets (the catalog), every
// client authenticated with SCRAM-SHA-512 over TLS from the feature file's
// kafka.security, with exact values checked at each end. Then a wrong
// password makes worker, serve, produce and backfill exit at start-up with
// "SASL authentication failed for user ...", well before the check's
// timeout, leaving nothing behind.
func TestSASLSSLRoundTrip(t *testing.T) {
	k := testkit.SASLSSL(t)
	brokers := strings.Join(k.Brokers, ",")
	t.Setenv("FP_E2E_KAFKA_PASSWORD", k.Password)
	dir := t.TempDir()
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	for _, name := range []string{"transaction.avsc"} {
		b, err := schemas.Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "features.yaml")
	text := strings.NewReplacer("{{ID}}", id, "{{CA}}", k.CAFile, "{{USER}}", k.Username).Replace(saslFeatureFile)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	// produce: u-1 spends 10 and 30 within the last hours, u-2 5; one
	// event of u-1 is 8 days old (outside every 7d window).
	now := time.Now()
	ev := func(user string, amount float64, ago time.Duration) string {
		return fmt.Sprintf(`{"user_id":%q,"merchant_id":"m1","amount":%v,"currency":"EUR","ts":%d}`, user, amount, now.Add(-ago).UnixMilli())
	}
	events := filepath.Join(dir, "events.jsonl")
	lines := []string{ev("u-1", 10, 3*time.Hour), ev("u-1", 30, 2*time.Hour), ev("u-2", 5, time.Hour), ev("u-1", 1000, 8*24*time.Hour)}
	if err := os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := execCLI("produce", "--brokers", brokers, "--config", cfgPath, "--source", "transactions", "--input", events)
	if code != 0 || !strings.Contains(stdout, "4 lines read, 4 sent to sec-transactions-"+id) {
		t.Fatalf("produce over SASL_SSL: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// worker and serve, in this process, until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	type exit struct {
		name string
		code int
		err  *bytes.Buffer
	}
	exits := make(chan exit, 2)
	start := func(name string, args ...string) {
		var errOut bytes.Buffer
		go func() { exits <- exit{name, run(ctx, args, &bytes.Buffer{}, &errOut), &errOut} }()
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range 2 {
			select {
			case e := <-exits:
				if e.code != 0 {
					t.Errorf("%s exit %d: %s", e.name, e.code, e.err)
				}
			case <-time.After(60 * time.Second):
				t.Error("worker or serve did not stop within 60s")
			}
		}
	}
	defer stop()
	addr := freeAddr(t)
	start("worker", "worker", "--brokers", brokers, "--config", cfgPath, "--data", t.TempDir(), "--metrics", "", "--log-level", "error")
	start("serve", "serve", "--brokers", brokers, "--config", cfgPath, "--data", t.TempDir(), "--listen", addr, "--log-level", "error")

	type feature struct {
		Value  *float64 `json:"value"`
		Status string   `json:"status"`
	}
	lookup := func(key string) (map[string]feature, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/features/user/"+key, nil)
		req.Header.Set("X-Featurepipe-Consumer", "sasl-test")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Results []struct {
				Features map[string]feature `json:"features"`
			} `json:"results"`
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Results) != 1 {
			return nil, fmt.Errorf("answer %+v: %v", body, err)
		}
		return body.Results[0].Features, nil
	}
	want := map[string]map[string]float64{
		"u-1": {"txn_count_7d": 2, "txn_amount_sum_7d": 40, "txn_amount_max_7d": 30},
		"u-2": {"txn_count_7d": 1, "txn_amount_sum_7d": 5, "txn_amount_max_7d": 5},
	}
	matches := func(got map[string]feature, want map[string]float64) bool {
		for name, v := range want {
			f, ok := got[name]
			if !ok || f.Status != "PRESENT" || f.Value == nil || *f.Value != v {
				return false
			}
		}
		return len(got) == len(want)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, key := range []string{"u-1", "u-2"} {
		for {
			got, err := lookup(key)
			if err == nil && matches(got, want[key]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lookup of %s over a SASL_SSL-fed pipeline: %v (err %v), want %v", key, got, err, want[key])
			}
			select {
			case e := <-exits:
				t.Fatalf("%s exited early (%d): %s", e.name, e.code, e.err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	stop() // serve flushes its lookup log

	// backfill: as of now, and as of 150 minutes ago (only u-1's 10 then).
	at := now.UTC().Format(time.RFC3339Nano)
	before := now.Add(-150 * time.Minute).UTC().Format(time.RFC3339Nano)
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,timestamp\nu-1,"+at+"\nu-2,"+at+"\nu-1,"+before+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "train.csv")
	code, stdout, stderr = execCLI("backfill", "--brokers", brokers, "--config", cfgPath, "--spine", spine, "--out", out, "--dataset-name", "sasl_train")
	if code != 0 {
		t.Fatalf("backfill over SASL_SSL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	rows := readCSV(t, out)
	wantRows := [][]string{
		{"user_id", "timestamp", "txn_count_7d", "txn_amount_sum_7d", "txn_amount_max_7d"},
		{"u-1", at, "2", "40", "30"},
		{"u-2", at, "1", "5", "5"},
		{"u-1", before, "1", "10", "10"},
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("backfill wrote %v, want %v", rows, wantRows)
	}
	for i, w := range wantRows {
		got := slices.Clone(rows[i])
		if i > 0 {
			got[1] = w[1] // the timestamp column's format is the writer's business
		}
		if !slices.Equal(got, w) {
			t.Errorf("row %d: %v, want %v", i, rows[i], w)
		}
	}

	// The catalog over SASL_SSL: the backfill registered its dataset.
	code, stdout, stderr = execCLI("datasets", "--brokers", brokers, "--config", cfgPath, "--json")
	if code != 0 || !strings.Contains(stdout, `"name": "sasl_train"`) {
		t.Errorf("datasets over SASL_SSL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// skew reads the lookup log serve wrote over SASL_SSL and recomputes
	// it (mismatches are possible: the first polls raced the worker; only
	// that the log was read and compared is checked).
	code, stdout, stderr = execCLI("skew", "--brokers", brokers, "--config", cfgPath, "--json")
	var rep struct {
		Entries, Compared int64
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code > 1 || rep.Entries < 2 || rep.Compared < 2 {
		t.Errorf("skew over SASL_SSL: exit %d, %+v (%v)\n%s\n%s", code, rep, err, stdout, stderr)
	}

	// A wrong password: every command stops at start-up with the reason.
	t.Setenv("FP_E2E_KAFKA_PASSWORD", k.Password+"-wrong")
	wantErr := fmt.Sprintf("SASL authentication failed for user %q (SCRAM-SHA-512) at %s", k.Username, brokers)
	for _, args := range [][]string{
		{"worker", "--brokers", brokers, "--config", cfgPath, "--data", t.TempDir(), "--metrics", ""},
		{"serve", "--brokers", brokers, "--config", cfgPath, "--data", t.TempDir(), "--listen", freeAddr(t)},
		{"produce", "--brokers", brokers, "--config", cfgPath, "--source", "transactions", "--input", events},
		{"backfill", "--brokers", brokers, "--config", cfgPath, "--spine", spine, "--out", filepath.Join(dir, "wrong.csv")},
	} {
		began := time.Now()
		code, _, stderr := execCLI(args...)
		took := time.Since(began)
		if code != 1 || !strings.Contains(stderr, wantErr) || !strings.Contains(stderr, "FP_E2E_KAFKA_PASSWORD") {
			t.Errorf("%s with a wrong password: exit %d, stderr %q\nwant exit 1 saying %q and naming the variable", args[0], code, stderr, wantErr)
		}
		if took > 10*time.Second {
			t.Errorf("%s took %s to fail: it should fail at the first answer", args[0], took)
		}
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestCommandsConnectWithKafkaSecurity runs commands against an embedded
// broker that takes only TLS and SCRAM-SHA-256 (no Apache Kafka needed):
// the feature file's kafka.security reaches produce, worker and the catalog
// commands (a password file named relative to the feature file), and a
// rotated-away password stops the worker at start-up with the reason.
func TestCommandsConnectWithKafkaSecurity(t *testing.T) {
	ca := testkit.WriteTLS(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(ca.Server), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "fp", "s3cret"), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	f := newProduceFixture(t) // its own plaintext broker is not used
	demo, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	security := "kafka:\n  security:\n    tls: {ca_file: " + ca.CAFile + "}\n" +
		"    sasl: {mechanism: SCRAM-SHA-256, username: fp, password_file: secrets/kafka-password}\n"
	if err := os.WriteFile(f.config, append([]byte(security), demo...), 0o644); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(f.dir, "secrets", "kafka-password")
	if err := os.MkdirAll(filepath.Dir(pwFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	events := f.input(t, "events.jsonl", txnLine("u-1", 10), txnLine("u-2", 5))
	if code, stdout, stderr := execCLI("produce", "--brokers", brokers, "--config", f.config, "--source", "transactions", "--input", events); code != 0 || !strings.Contains(stdout, "2 lines read, 2 sent") {
		t.Fatalf("produce over TLS+SCRAM: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := execCLI("datasets", "--brokers", brokers, "--config", f.config); code != 0 || !strings.Contains(stdout, "no dataset in the catalog") {
		t.Fatalf("datasets over TLS+SCRAM: exit %d\n%s\n%s", code, stdout, stderr)
	}

	if err := os.WriteFile(pwFile, []byte("rotated-elsewhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	code, _, stderr := execCLI("worker", "--brokers", brokers, "--config", f.config, "--data", t.TempDir(), "--metrics", "")
	want := `SASL authentication failed for user "fp" (SCRAM-SHA-256) at ` + brokers
	if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "the password in the file "+pwFile) {
		t.Errorf("worker with a wrong password: exit %d, stderr %q\nwant exit 1 saying %q and naming the file", code, stderr, want)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("the worker took %s to fail", took)
	}
}
