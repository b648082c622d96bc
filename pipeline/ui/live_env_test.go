//go:build browser

package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/usage"
	"github.com/featurepipe/featurepipe/pipeline/worker"
	"github.com/featurepipe/featurepipe/schemas"
)

// liveEnv is the whole pipeline on the embedded broker, as `featurepipe
// dev` runs it: the demo feature file, a worker, a lookup replica serving
// the API and the UI (wired as cmd/featurepipe wires them), demo events,
// a registered dataset and model, and lookups by two consumers.
type liveEnv struct {
	url  string
	cfg  *config.File
	live *usage.Live
	// tokens, with API tokens on, maps each consumer to its token.
	tokens map[string]string
}

// liveTokens are the API tokens of startLive(t, true): fraud-api,
// batch-scorer and admin may read everything; payments-only reads user
// features tagged payments only.
var liveTokens = map[string]string{"fraud-api": "fpt_fraud-api", "batch-scorer": "fpt_batch-scorer", "admin": "fpt_admin", "payments-only": "fpt_payments-only"}

func liveTokensFile() string {
	var b strings.Builder
	b.WriteString("tokens:\n")
	for consumer, tok := range liveTokens {
		scope := `["*"]`
		if consumer == "payments-only" {
			scope = "[payments]"
		}
		fmt.Fprintf(&b, "  - consumer: %s\n    sha256: %s\n    entities: [\"*\"]\n    tags: %s\n", consumer, lookup.HashToken(tok), scope)
	}
	return b.String()
}

// The usage the environment makes: fraud-api reads the fraud_scoring
// service (txn_count_7d@1 among its features) for two keys, batch-scorer
// reads txn_count_7d for one key.
const (
	fraudLookups = 7
	batchLookups = 3
)

func startLive(t *testing.T, withTokens bool) *liveEnv {
	t.Helper()
	demo, err := schemas.Files.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k, cfg, cl := testkit.Setup(t, string(demo), testkit.SetupOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	open := func(o state.Options) *state.Store {
		st, err := state.Open(t.TempDir(), o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() }) // after the components stop (cleanups run last first)
		return st
	}
	wst, lst := open(state.Options{NoSync: true}), open(lookup.StoreOptions(state.Options{NoSync: true}))
	w, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: wst, StatusInterval: time.Second, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	lo := lookup.Options{Brokers: k.Brokers, Config: cfg, Store: lst}
	uo := Options{Config: cfg, Refresh: -1}
	if withTokens {
		ts, err := lookup.ParseTokens("tokens.yaml", []byte(liveTokensFile()), cfg)
		if err != nil {
			t.Fatal(err)
		}
		lo.Tokens, uo.Tokens = ts, ts
	}
	svc, err := lookup.New(lo)
	if err != nil {
		t.Fatal(err)
	}
	live := usage.NewLive()
	api := svc.Handler()
	uo.Registry, uo.Usage, uo.API = svc.Registry(), live, api
	u, err := New(uo)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", u)
	mux.Handle("/", api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	run("worker", w.Run)
	run("lookup", svc.Run)
	run("usage", func(ctx context.Context) error {
		return live.Follow(ctx, kafka.Conn{Brokers: k.Brokers}, cfg.Kafka.LookupLogTopic, time.Now().Add(-usage.UnusedAfter), nil, nil)
	})

	// Demo events: user u0NN made NN+2 transactions in the last days, and logged in twice.
	now := time.Now()
	var recs []*kgo.Record
	for _, src := range []string{"transactions", "logins"} {
		enc, err := produce.NewEncoder(cfg, src)
		if err != nil {
			t.Fatal(err)
		}
		for u := 1; u <= 12; u++ {
			n := u + 2
			if src == "logins" {
				n = 2
			}
			for i := range n {
				r, err := enc.Record(testkit.Event(src, fmt.Sprintf("u%03d", u), now.Add(-time.Duration(i*7+u)*time.Hour).UnixMilli(), float64(10*(i+1)+u)))
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	env := &liveEnv{url: srv.URL, cfg: cfg, live: live}
	if withTokens {
		env.tokens = liveTokens
	}
	env.waitFor(t, "the lookup service to answer every event", func() bool {
		var resp lookup.LookupResponse
		// (not txn_count_7d, whose usage the test checks; u012's largest
		// amount is in its oldest event, produced last)
		code := env.post(t, "", map[string]any{"entity": "user", "keys": []string{"u012"}, "features": []string{"txn_amount_max_7d@1", "login_count_lifetime@1"}}, &resp)
		if code != 200 || len(resp.Results) != 1 {
			return false
		}
		f := resp.Results[0].Features
		m, l := f["txn_amount_max_7d@1"].Value, f["login_count_lifetime@1"].Value
		return m != nil && *m == 152 && l != nil && *l == 2
	})

	// A training dataset and a model in the catalog, on fraud_scoring.
	svcDef, err := cfg.Service("fraud_scoring")
	if err != nil {
		t.Fatal(err)
	}
	var refs []registry.FeatureRef
	for _, ref := range svcDef.Features {
		f, err := cfg.Feature(ref)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, registry.FeatureRef{Feature: f.ID, Column: f.Name, Hash: f.Hash})
	}
	topic := cfg.Kafka.RegistryTopic
	ds, err := registry.RegisterDataset(ctx, cl, topic, registry.Dataset{Name: "fraud_train", Description: "Card-fraud training rows, November",
		Owner: "fraud-team", Service: "fraud_scoring", Entity: "user", Features: refs, SpinePath: "/data/fraud_spine.csv",
		SpineSHA256: "5d41402abc4b2a76b9719d911017c592aa5d41402abc4b2a76b9719d911017c5", Rows: 120000, PointInTime: "event",
		Location: "/data/fraud_train.parquet", Format: "parquet", Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := registry.RegisterModel(ctx, cl, topic, cfg, registry.Model{Name: "fraud-gbm", Version: 1, Dataset: ds.ID(),
		Service: "fraud_scoring", Metrics: map[string]float64{"auc": 0.912, "recall_at_1pct": 0.64}, Owner: "fraud-team",
		Description: "Gradient-boosted card-fraud model", URI: "s3://models/fraud-gbm/1", Actor: "bob"}); err != nil {
		t.Fatal(err)
	}

	// Lookups by two consumers, then wait until the UI's usage has them all.
	for range fraudLookups {
		env.post(t, "fraud-api", map[string]any{"entity": "user", "keys": []string{"u001", "u002"}, "feature_service": "fraud_scoring"}, nil)
	}
	for range batchLookups {
		env.post(t, "batch-scorer", map[string]any{"entity": "user", "keys": []string{"u003"}, "features": []string{"txn_count_7d"}}, nil)
	}
	env.waitFor(t, "the usage to show every lookup", func() bool {
		st := live.Stats("txn_count_7d@1", time.Now(), usage.LiveHours)
		return st != nil && st.Total.Lookups == fraudLookups+batchLookups
	})
	env.waitFor(t, "the catalog to show the model", func() bool {
		_, ok := svc.Registry().Model("fraud-gbm@1")
		return ok
	})
	return env
}

// post sends a lookup to the API as consumer (none: "") and decodes the
// answer into out (may be nil); it returns the status.
func (e *liveEnv) post(t *testing.T, consumer string, body, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/lookup", bytes.NewReader(b))
	switch {
	case e.tokens != nil && consumer == "":
		req.Header.Set("Authorization", "Bearer "+e.tokens["admin"])
	case e.tokens != nil:
		req.Header.Set("Authorization", "Bearer "+e.tokens[consumer])
	case consumer != "":
		req.Header.Set(lookup.ConsumerHeader, consumer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// waitFor polls cond for up to two minutes (a loaded machine is slow, not
// wrong), failing the test with what it waited for.
func (e *liveEnv) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
