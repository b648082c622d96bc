package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// twoServices: fraud_scoring (servicesBlock) and spending, sharing
// txn_count_7d@1.
const twoServices = servicesBlock + `  - name: spending
    owner: payments-team
    description: Spending profile.
    features: [txn_count_7d@1, txn_sum_1d@1]
`

// TestPlanAndLineage: two services share a feature, two consumers read
// them through the lookup service (each with its API token), a backfill registers a dataset from one service and a model is
// registered on it; `plan` on a file that redefines a shared feature and
// removes two (one with dependents, one without) exits 2 listing each
// change's dependents and owners, `plan` on the running file exits 0, a file
// whose service lists a removed feature exits 1; `lineage --json` answers
// both directions and `describe` shows the model.
func TestPlanAndLineage(t *testing.T) {
	k, cfg, cl := setup(t, featureFile+twoServices)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(21, 22))
	now := time.Now()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 300, 10, 5*24*time.Hour, now), newProduced())
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Actor: "alice", InstanceID: "w1"}, filepath.Join(dir, "w"))
	brokers := strings.Join(k.Brokers, ",")
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, err := registry.Load(ctx, kafka.Conn{Brokers: k.Brokers}, cfg.Kafka.RegistryTopic, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Definitions()) == len(cfg.Features) && len(v.Services()) == len(cfg.Services) {
			// The worker recorded its file's services, bare references
			// resolved, and each version's metadata.
			fs, _ := v.Service("fraud_scoring")
			if fs.Owner != "fraud-team" || !slices.Equal(fs.Resolved, []string{"txn_count_7d@1", "txn_avg_30d@1", "login_count_1h@1"}) ||
				!slices.Equal(fs.Models, []string{"fraud-gbm"}) || fs.RegisteredBy != "alice via featurepipe-worker/w1" {
				t.Fatalf("recorded service fraud_scoring: %+v", fs)
			}
			if m, ok := v.Meta("txn_count_7d@1"); !ok || m.Owner == "" || m.RegisteredBy != fs.RegisteredBy {
				t.Fatalf("recorded metadata of txn_count_7d@1: %+v (found %v)", m, ok)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 90s the worker registered %d of %d feature versions and %d of %d services",
				len(v.Definitions()), len(cfg.Features), len(v.Services()), len(cfg.Services))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Two consumers look the services up through the lookup service, each
	// with its API token: fraud-api reads fraud_scoring for two keys,
	// payments-api spending for one.
	fraudTok, fraudHash, err := lookup.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	payTok, payHash, err := lookup.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	toks, err := lookup.ParseTokens("tokens.yaml", []byte(fmt.Sprintf(`tokens:
  - {consumer: fraud-api, sha256: %s, entities: ["*"], tags: ["*"]}
  - {consumer: payments-api, sha256: %s, entities: ["*"], tags: ["*"]}
`, fraudHash, payHash)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := lookup.OpenStore(filepath.Join(dir, "view"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: st, Tokens: toks})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, st)
	for deadline := time.Now().Add(90 * time.Second); !ls.ready(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lookup service was not ready within 90s")
		}
	}
	lookupAs := func(token, service string, keys ...string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"entity": "user", "keys": keys, "feature_service": service})
		req, err := http.NewRequest(http.MethodPost, ls.url+"/v1/lookup", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("lookup of %s: HTTP %d", service, resp.StatusCode)
		}
	}
	lookupAs(fraudTok, "fraud_scoring", "user-001", "user-002")
	lookupAs(payTok, "spending", "user-003")
	// The lookup log is written asynchronously: wait until it holds the
	// three keys.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		n := 0
		if err := kafka.ReadToEnd(ctx, cl, cfg.Kafka.LookupLogTopic, func(r *kgo.Record) error {
			for range lookuplog.Entries(r.Value) {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lookup log holds %d entries after 60s, want 3", n)
		}
	}

	spine := filepath.Join(dir, "spine.csv")
	var sb strings.Builder
	sb.WriteString("user_id,timestamp\n")
	for i := range 5 {
		fmt.Fprintf(&sb, "user-%03d,%s\n", i, now.Add(-time.Duration(i+1)*time.Hour).UTC().Format(time.RFC3339))
	}
	if err := os.WriteFile(spine, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := cli(t, "backfill", "--brokers", brokers, "--config", cfg.Path, "--spine", spine, "--out", filepath.Join(dir, "train.csv"),
		"--feature-service", "fraud_scoring", "--owner", "ds-team"); code != 0 || !strings.Contains(stdout, "dataset train@1") {
		t.Fatalf("backfill: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := cli(t, "models", "register", "--brokers", brokers, "--config", cfg.Path, "--name", "fraud-gbm", "--version", "1",
		"--dataset", "train@1", "--service", "fraud_scoring", "--owner", "ml-team"); code != 0 {
		t.Fatalf("models register: exit %d\n%s%s", code, stdout, stderr)
	}

	// plan on the running file: nothing changes.
	if code, stdout, stderr := cli(t, "plan", "--brokers", brokers, "--config", cfg.Path, "--current", cfg.Path); code != 0 || !strings.Contains(stdout, "No changes") {
		t.Fatalf("plan of the running file: exit %d\n%s%s", code, stdout, stderr)
	}

	// Without --current, plan compares with the services and metadata the
	// worker recorded: the running file changes nothing, and a file without
	// the services shows each removal with its dependents (spending, which
	// no dataset or model names, is known only from the worker's record).
	if code, stdout, stderr := cli(t, "plan", "--brokers", brokers, "--config", cfg.Path); code != 0 || !strings.Contains(stdout, "No changes") {
		t.Fatalf("plan of the running file without --current: exit %d\n%s%s", code, stdout, stderr)
	}
	{
		text, err := os.ReadFile(cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), twoServices) {
			t.Fatal("the services block is not in the feature file")
		}
		noServices := filepath.Join(filepath.Dir(cfg.Path), "no-services.yaml")
		if err := os.WriteFile(noServices, []byte(strings.Replace(string(text), twoServices, "", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := cli(t, "plan", "--brokers", brokers, "--config", noServices, "--json")
		var p lineage.Plan
		if err := json.Unmarshal([]byte(stdout), &p); code != 2 || err != nil {
			t.Fatalf("plan without services: exit %d (want 2), %v\n%s%s", code, err, stdout, stderr)
		}
		got := map[string]lineage.Change{}
		for _, c := range p.Changes {
			got[c.Kind+" "+c.Object] = c
		}
		fs, ok := got[lineage.ServiceRemoved+" service:fraud_scoring"]
		var deps []string
		for _, n := range fs.Dependents {
			deps = append(deps, n.ID)
		}
		if !ok || !fs.Breaking || !slices.Equal(deps, []string{"dataset:train@1", "model:fraud-gbm@1"}) || !slices.Equal(fs.Owners, []string{"ds-team", "ml-team"}) {
			t.Errorf("fraud_scoring removed: %+v (found %v)", fs, ok)
		}
		if sp, ok := got[lineage.ServiceRemoved+" service:spending"]; !ok || sp.Breaking {
			t.Errorf("spending removed: %+v (found %v)", sp, ok)
		}
		if len(p.Changes) != 2 {
			t.Errorf("plan without services: %d changes, want 2:\n%s", len(p.Changes), stdout)
		}
	}

	// The new file: txn_count_7d@1 redefined in place (14d), login_count_1h@1
	// removed (and from the service), txn_min_7d@1 removed (nothing uses it).
	text, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(s, old, new string) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("%q is not in the feature file", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	next := edit(string(text), "aggregation: count, window: 7d, hop: 6h", "aggregation: count, window: 14d, hop: 6h")
	next = edit(next, "  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}\n", "")
	next = edit(next, "  - {name: txn_min_7d, version: 1, entity: user, source: transactions, aggregation: min, field: amount, window: 7d, owner: t, description: d}\n", "")
	listed := filepath.Join(filepath.Dir(cfg.Path), "listed.yaml") // still listed by the service
	if err := os.WriteFile(listed, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	next = edit(next, "[txn_count_7d@1, txn_avg_30d, login_count_1h@1]", "[txn_count_7d@1, txn_avg_30d]")
	newPath := filepath.Join(filepath.Dir(cfg.Path), "new.yaml")
	if err := os.WriteFile(newPath, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cli(t, "plan", "--brokers", brokers, "--config", listed); code != 1 || !strings.Contains(stderr, "login_count_1h@1") ||
		!strings.Contains(stderr, "listed.yaml:") {
		t.Fatalf("plan of a file whose service lists a removed feature: exit %d\n%s; want exit 1 naming it at file:line", code, stderr)
	}

	code, stdout, stderr := cli(t, "plan", "--brokers", brokers, "--config", newPath, "--current", cfg.Path, "--json")
	if code != 2 {
		t.Fatalf("plan --json: exit %d, want 2\n%s%s", code, stdout, stderr)
	}
	var p lineage.Plan
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, stdout)
	}
	type want struct {
		kind, object string
		breaking     bool
		dependents   []string
		owners       []string
	}
	for _, w := range []want{
		{lineage.Redefined, "feature:txn_count_7d@1", true,
			[]string{"service:fraud_scoring", "service:spending", "dataset:train@1", "model:fraud-gbm@1", "consumer:fraud-api", "consumer:payments-api"},
			[]string{"ds-team", "fraud-api", "fraud-team", "ml-team", "payments-api", "payments-team"}},
		{lineage.Removed, "feature:login_count_1h@1", true,
			[]string{"service:fraud_scoring", "dataset:train@1", "model:fraud-gbm@1", "consumer:fraud-api"},
			[]string{"ds-team", "fraud-api", "fraud-team", "ml-team"}},
		{lineage.ServiceChanged, "service:fraud_scoring", true, []string{"dataset:train@1", "model:fraud-gbm@1"}, []string{"ds-team", "ml-team"}},
		{lineage.Removed, "feature:txn_min_7d@1", false, []string{}, []string{}},
	} {
		var got *lineage.Change
		for i := range p.Changes {
			if p.Changes[i].Kind == w.kind && p.Changes[i].Object == w.object {
				got = &p.Changes[i]
			}
		}
		if got == nil {
			t.Errorf("no %s %s in the plan:\n%s", w.kind, w.object, stdout)
			continue
		}
		var deps []string
		for _, n := range got.Dependents {
			deps = append(deps, n.ID)
		}
		if got.Breaking != w.breaking || !slices.Equal(deps, w.dependents) && len(deps)+len(w.dependents) > 0 || !slices.Equal(got.Owners, w.owners) {
			t.Errorf("%s %s: breaking %v, dependents %v, owners %v\nwant %v, %v, %v", w.kind, w.object, got.Breaking, deps, got.Owners, w.breaking, w.dependents, w.owners)
		}
	}
	if len(p.Changes) != 4 || !p.Breaking {
		t.Errorf("plan has %d changes (want 4), breaking %v:\n%s", len(p.Changes), p.Breaking, stdout)
	}
	// The text form says the same to people.
	code, stdout, _ = cli(t, "plan", "--brokers", brokers, "--config", newPath, "--current", cfg.Path)
	for _, s := range []string{"! redefined feature:txn_count_7d@1  BREAKING", `window_size_ms: registered "604800000", now "1209600000"`,
		"tell: ds-team, fraud-api, fraud-team, ml-team, payments-api, payments-team", "- removed feature:txn_min_7d@1\n", "Plan: 4 changes, 3 breaking."} {
		if !strings.Contains(stdout, s) {
			t.Errorf("plan text lacks %q:\n%s", s, stdout)
		}
	}
	if code != 2 {
		t.Errorf("plan: exit %d, want 2", code)
	}

	// lineage --json, both directions.
	lin := func(args ...string) lineage.Sub {
		t.Helper()
		code, stdout, stderr := cli(t, append([]string{"lineage", "--brokers", brokers, "--config", cfg.Path, "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("lineage %v: exit %d\n%s", args, code, stderr)
		}
		var s lineage.Sub
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("lineage %v: %v\n%s", args, err, stdout)
		}
		return s
	}
	nodeIDs := func(s lineage.Sub) []string {
		var out []string
		for _, n := range s.Nodes {
			out = append(out, n.ID)
		}
		return out
	}
	down := lin("feature:txn_count_7d@1", "--downstream")
	if got, want := nodeIDs(down), []string{"feature:txn_count_7d@1", "service:fraud_scoring", "service:spending", "dataset:train@1",
		"model:fraud-gbm@1", "consumer:fraud-api", "consumer:payments-api"}; !slices.Equal(got, want) {
		t.Errorf("lineage --downstream: %v\nwant %v", got, want)
	}
	if !slices.Contains(down.Edges, lineage.Edge{From: "feature:txn_count_7d@1", To: "consumer:fraud-api", Lookups: 2}) {
		t.Errorf("lineage --downstream edges lack fraud-api's 2 lookups: %v", down.Edges)
	}
	topic := ""
	for _, s := range cfg.Sources {
		if s.Name == "transactions" {
			topic = "topic:" + s.Topic
		}
	}
	var logins string
	for _, s := range cfg.Sources {
		if s.Name == "logins" {
			logins = "topic:" + s.Topic
		}
	}
	up := lin("model:fraud-gbm@1", "--upstream")
	if got, want := nodeIDs(up), []string{"model:fraud-gbm@1", logins, topic, "source:logins", "source:transactions",
		"feature:login_count_1h@1", "feature:txn_avg_30d@1", "feature:txn_count_7d@1", "service:fraud_scoring", "dataset:train@1"}; !slices.Equal(got, want) {
		t.Errorf("lineage --upstream: %v\nwant %v", got, want)
	}
	if code, stdout, _ := cli(t, "lineage", "service:spending", "--brokers", brokers, "--config", cfg.Path, "--dot"); code != 0 ||
		!strings.Contains(stdout, `"feature:txn_sum_1d@1" -> "service:spending";`) {
		t.Errorf("lineage --dot: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := cli(t, "lineage", "feature:txn_count_7d", "--brokers", brokers); code != 2 || !strings.Contains(stderr, "feature:txn_count_7d@1") {
		t.Errorf("lineage of a feature without version: exit %d\n%s", code, stderr)
	}

	// describe: a model, with its dataset and what it depends on.
	code, stdout, stderr = cli(t, "describe", "model:fraud-gbm@1", "--brokers", brokers, "--config", cfg.Path)
	if code != 0 || !strings.Contains(stdout, "dataset:") || !strings.Contains(stdout, "train@1") || !strings.Contains(stdout, "ml-team") ||
		!strings.Contains(stdout, "feature:txn_count_7d@1") {
		t.Errorf("describe model: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = cli(t, "describe", "feature:txn_count_7d@1", "--brokers", brokers, "--config", cfg.Path, "--json")
	var d lineage.Description
	if err := json.Unmarshal([]byte(stdout), &d); code != 0 || err != nil {
		t.Fatalf("describe --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if d.Definition == nil || d.Definition.RegisteredBy != "alice via featurepipe-worker/w1" || d.Feature == nil || d.Feature.Hash != d.Definition.Hash ||
		d.Consumers["fraud-api"] != 2 || d.Consumers["payments-api"] != 1 || len(d.Downstream) != 6 {
		t.Errorf("describe feature: %+v", d)
	}
}
