package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// listFile has the two list aggregations, a finite and a lifetime one.
var listFile = testkit.KafkaSection(4) + testkit.UserTransactions + `features:
  - {name: txn_last3_7d, version: 1, entity: user, source: transactions, aggregation: last_k, k: 3, field: amount, window: 7d, hop: 6h, owner: t, description: d}
  - {name: txn_first4, version: 1, entity: user, source: transactions, aggregation: first_k, k: 4, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 6h, owner: t, description: d}
`

// TestListFeaturesThroughWorkerAndLookup runs first_k and last_k through a
// real worker (tiles in Pebble, the feature log) and the lookup service and
// checks every answer against aggtest.BruteForceList over the produced
// events (their Kafka offsets break ties on event time): events produced
// out of event-time order, ties on event time, more events than k, fewer,
// a key whose 7d window is empty (null, EMPTY_WINDOW) and an unknown key
// (null, NOT_FOUND).
func TestListFeaturesThroughWorkerAndLookup(t *testing.T) {
	k, cfg, cl := setup(t, listFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	tie := ms(3 * time.Hour)
	produceEvents(t, ctx, cl, cfg, []event{
		{source: "transactions", key: "many", ts: ms(2 * time.Hour), amount: 1},
		{source: "transactions", key: "many", ts: ms(30 * time.Hour), amount: 2},
		{source: "transactions", key: "many", ts: tie, amount: 3},
		{source: "transactions", key: "many", ts: tie, amount: 4}, // a later offset: later than 3
		{source: "transactions", key: "many", ts: ms(time.Hour), amount: 5},
		{source: "transactions", key: "many", ts: ms(10 * 24 * time.Hour), amount: 6}, // outside 7d
		{source: "transactions", key: "many", ts: tie, amount: 7},
		{source: "transactions", key: "few", ts: ms(5 * time.Hour), amount: 8},
		{source: "transactions", key: "few", ts: ms(6 * time.Hour), amount: 9},
		{source: "transactions", key: "old", ts: ms(20 * 24 * time.Hour), amount: 10},
		{source: "transactions", key: "old", ts: ms(21 * 24 * time.Hour), amount: 11},
	}, p)
	dir := t.TempDir()
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	keys := []string{"many", "few", "old", "nobody"}
	names := []string{"txn_last3_7d", "txn_first4"}

	check := func() (bad []string, resp lookup.LookupResponse) {
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": keys, "features": names}, &resp); code != http.StatusOK {
			return []string{"HTTP " + http.StatusText(code)}, resp
		}
		T := resp.AsOf.UnixMilli()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range resp.Results {
			for _, name := range names {
				f, _ := cfg.Feature(name)
				got := r.Features[name]
				want, ok := aggtest.BruteForceList(f.Aggregation, f.Window, p.events["transactions"][r.Key], T)
				status := lookup.StatusPresent
				switch {
				case !p.knownLocked("user", r.Key, T):
					status = lookup.StatusNotFound
				case !ok:
					status = lookup.StatusEmptyWindow
				}
				if got.Status != status || got.Value != nil || (got.List != nil) != ok || !slices.Equal(got.List, want) {
					bad = append(bad, r.Key+" "+name+": "+got.Status+" "+fmtList(got.List)+", want "+status+" "+fmtList(want))
				}
			}
		}
		return bad, resp
	}
	var bad []string
	var resp lookup.LookupResponse
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if bad, resp = check(); len(bad) == 0 && ls.ready() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups differ from the brute force after 90s: %v", bad)
		}
	}
	// The rules by example (the brute force above is the definition).
	get := func(key, name string) []float64 {
		for _, r := range resp.Results {
			if r.Key == key {
				return r.Features[name].List
			}
		}
		return nil
	}
	for _, c := range []struct {
		key, name string
		want      []float64
	}{
		{"many", "txn_last3_7d", []float64{5, 1, 7}},  // newest first; of the tie at 3h, the latest offset
		{"many", "txn_first4", []float64{6, 2, 3, 4}}, // oldest first; the tie in offset order
		{"few", "txn_last3_7d", []float64{8, 9}},      // fewer than k
		{"old", "txn_first4", []float64{11, 10}},      // lifetime keeps what 7d forgot
	} {
		if got := get(c.key, c.name); !slices.Equal(got, c.want) {
			t.Errorf("%s %s = %v, want %v", c.key, c.name, got, c.want)
		}
	}
}

func fmtList(l []float64) string {
	if l == nil {
		return "null"
	}
	b, _ := json.Marshal(l)
	return string(b)
}
