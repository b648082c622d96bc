package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// tileBudgetFile has a bucketed last_k of 1000 strings (the largest k,
// over a string field) and counts to check it against.
var tileBudgetFile = testkit.KafkaSection(2) + testkit.UserTransactions + `features:
  - {name: last_merchants_by_currency, version: 1, entity: user, source: transactions, aggregation: last_k, k: 1000, field: merchant_id, bucket: currency, max_buckets: 3, window: 7d, hop: 1d, owner: t, description: d}
  - {name: txn_count_by_currency, version: 1, entity: user, source: transactions, aggregation: count, bucket: currency, window: 7d, hop: 1d, owner: t, description: d}
`

// TestHeavyBucketedTileStaysPublishable sends one user 6,000 transactions
// in 6 currencies, within one daily tile, each with a distinct 250-byte
// merchant: the bucketed last_k of 1000 merchants would make that tile
// ~1.6 MB, past Kafka's 1 MiB message, and its feature-log record would
// stop the worker (MESSAGE_TOO_LARGE, then the same tile at every
// restart). With the tile budget the worker folds buckets into __other__,
// publishes, and the lookup serves the user: every event counted (the
// bucketed count, exact, adds up to 6,000), lists of at most 1000
// merchants, __other__ among the buckets; backfill, replaying the same
// events, folds at the same events and answers the same map at the
// lookup's T.
func TestHeavyBucketedTileStaysPublishable(t *testing.T) {
	k, cfg, cl := setup(t, tileBudgetFile)
	ctx := context.Background()
	p := newProduced()
	now := time.Now()
	dayStart := now.Truncate(24 * time.Hour).UnixMilli() // UTC days: the tiles' grid
	span := max(now.UnixMilli()-dayStart-1, 1)
	currencies := []string{"EUR", "USD", "GBP", "CHF", "JPY", "SEK"}
	const perCurrency = 1000
	var txns []bucketTxn
	for i := range perCurrency * len(currencies) {
		txns = append(txns, bucketTxn{"hot", currencies[i%len(currencies)], fmt.Sprintf("%0250d", i),
			dayStart + span*int64(i)/int64(perCurrency*len(currencies)), float64(i)})
	}
	for i := 0; i < len(txns); i += 1000 { // produce requests under 1 MiB
		produceBucketTxns(t, ctx, cl, cfg, txns[i:min(i+1000, len(txns))], p)
	}
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))

	names := []string{"last_merchants_by_currency", "txn_count_by_currency"}
	var resp rawLookup
	var counts map[string]float64
	var lists map[string][]string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		counts, lists = nil, nil
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": []string{"hot"}, "features": names}, &resp); code == http.StatusOK {
			f := resp.Results[0].Features
			_ = json.Unmarshal(f["txn_count_by_currency"].Value, &counts)
			_ = json.Unmarshal(f["last_merchants_by_currency"].Value, &lists)
		}
		total := 0.0
		for _, c := range counts {
			total += c
		}
		if total == float64(len(txns)) && len(lists) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the lookup counts %v events of %d and serves %d buckets of merchants (the worker did not publish the hot tile?)", total, len(txns), len(lists))
		}
	}
	for _, c := range currencies {
		if counts[c] != perCurrency {
			t.Errorf("count of %s: %v, want %d (an exact kind is not folded)", c, counts[c], perCurrency)
		}
	}
	if _, ok := lists[aggregations.OtherBucket]; !ok || len(lists) != 4 {
		t.Errorf("buckets %d, want 3 and %s: the tile was not folded?", len(lists), aggregations.OtherBucket)
	}
	for b, l := range lists {
		if len(l) == 0 || len(l) > 1000 {
			t.Errorf("bucket %s holds %d merchants, want 1 to 1000", b, len(l))
		}
	}

	T := resp.AsOf.UnixMilli()
	v, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: names[:1]}, []backfill.Point{{Key: "hot", T: T}})
	if err != nil {
		t.Fatal(err)
	}
	cells, ok := v.Buckets(0, 0)
	if !ok {
		t.Fatal("backfill: no value")
	}
	m := map[string][]string{}
	for _, c := range cells {
		m[c.Key] = c.Strs
	}
	if got, want := canonical(t, mustJSON(t, m)), canonical(t, resp.Results[0].Features[names[0]].Value); got != want {
		t.Errorf("backfill at the lookup's T differs from the lookup (%d and %d bytes)", len(got), len(want))
	}
}

// TestEventsStampedAheadStayPublishable sends one user 5,000 transactions
// stamped an hour ahead of the worker's clock (a producer whose clock runs
// fast), each with a distinct 250-byte merchant: kept pending in their
// tile, unbounded, they would make its feature-log record ~1.3 MB and stop
// the worker (MESSAGE_TOO_LARGE, at every restart). With the pending
// budget the worker publishes and keeps going: a transaction of another
// user sent afterwards is served; the hot user, all of whose events are
// ahead of now, is still NOT_FOUND.
func TestEventsStampedAheadStayPublishable(t *testing.T) {
	k, cfg, cl := setup(t, tileBudgetFile)
	ctx := context.Background()
	p := newProduced()
	ahead := time.Now().Add(time.Hour).UnixMilli()
	var txns []bucketTxn
	for i := range 5000 {
		txns = append(txns, bucketTxn{"early", "EUR", fmt.Sprintf("%0250d", i), ahead + int64(i%1000), 1})
	}
	for i := 0; i < len(txns); i += 1000 {
		produceBucketTxns(t, ctx, cl, cfg, txns[i:min(i+1000, len(txns))], p)
	}
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	produceBucketTxns(t, ctx, cl, cfg, []bucketTxn{{"later", "USD", "m1", time.Now().UnixMilli(), 1}}, p)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var resp rawLookup
		var counts map[string]float64
		if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": []string{"later"}, "features": []string{"txn_count_by_currency"}}, &resp); code == http.StatusOK {
			_ = json.Unmarshal(resp.Results[0].Features["txn_count_by_currency"].Value, &counts)
		}
		if counts["USD"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after 60s the transaction sent after the early ones is not served: the worker stopped?")
		}
	}
	var resp rawLookup
	if code := postJSON(t, ls.url+"/v1/lookup", map[string]any{"entity": "user", "keys": []string{"early"}, "features": []string{"txn_count_by_currency"}}, &resp); code != http.StatusOK {
		t.Fatalf("lookup: HTTP %d", code)
	}
	if st := resp.Results[0].Features["txn_count_by_currency"].Status; st != lookup.StatusNotFound {
		t.Errorf("early, whose events are all ahead of now: %s, want %s", st, lookup.StatusNotFound)
	}
}
