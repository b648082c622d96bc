package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// filterFile has features with and without a where on one source; each
// where has its Go twin in filterPredicates.
var filterFile = testkit.KafkaSection(4) + testkit.UserTransactions + `features:
  - {name: txn_sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_big_sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d, where: "amount > 5000.0 && currency != 'JPY'"}
  - {name: txn_big_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d, where: "amount > 5000.0 && currency != 'JPY'"}
  - {name: txn_odd_max_30d, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 30d, hop: 12h, owner: t, description: d, where: "int(amount) % 3 != 0"}
`

// txn is one produced transaction, with what the wheres read.
type txn struct {
	key      string
	ts       int64
	seq      int64 // aggregations.Seq(partition, offset)
	amount   float64
	currency string
}

// filterPredicates are the wheres of this file's feature files written in
// Go, by feature id (none: no where). int(amount) truncates toward zero in
// CEL, as the Go conversion does.
var filterPredicates = map[string]func(txn) bool{
	"txn_big_sum_7d@1":     func(e txn) bool { return e.amount > 5000 && e.currency != "JPY" },
	"txn_big_count_life@1": func(e txn) bool { return e.amount > 5000 && e.currency != "JPY" },
	"txn_odd_max_30d@1":    func(e txn) bool { return int64(e.amount)%3 != 0 },
	"txn_big_sum_7d@2":     func(e txn) bool { return e.amount > 2000 || e.currency == "JPY" },
}

// filteredWant is the brute force of feature f for key's events as of T:
// its value over the events its where keeps, and the lookup status, which
// (like NOT_FOUND) looks at every valid event of the key, kept or not.
func filteredWant(f *config.Feature, evs []txn, T int64) (want float64, ok bool, status string) {
	keep := filterPredicates[f.ID]
	var in []aggregations.Event
	known := false
	for _, e := range evs {
		known = known || e.ts < T
		if keep == nil || keep(e) {
			in = append(in, aggregations.Event{TS: e.ts, Seq: e.seq, Value: e.amount})
		}
	}
	if !known {
		return 0, false, lookup.StatusNotFound
	}
	want, ok = aggtest.BruteForce(f.Aggregation, f.Window, in, T)
	status = lookup.StatusEmptyWindow
	if c, _ := aggtest.BruteForce(aggregations.Count, f.Window, in, T); c > 0 {
		status = lookup.StatusPresent
	}
	return want, ok, status
}

// TestFilteredFeaturesMatchBruteForce streams transactions (amounts and
// currencies on both sides of the wheres, in random event-time order)
// through a worker and checks every feature, with and without a where,
// against a brute force applying the same predicates in Go: online through
// the lookup service and in backfill. One record whose where cannot be
// evaluated (int() of 1e300) lands in the dead-letter topic with reason
// filter_error and counts for none of its source's features, the unfiltered
// ones included; its key, which has no other event, stays NOT_FOUND.
func TestFilteredFeaturesMatchBruteForce(t *testing.T) {
	k, cfg, cl := setup(t, filterFile)
	ctx := context.Background()
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))

	src, _ := cfg.Source("transactions")
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 1))
	now := time.Now()
	const users = 30
	txns, recs := genTxns(t, enc, rng, 1500, users, now)
	// The record whose where fails: valid Avro, valid fields, but
	// int(1e300) overflows. Encoded by hand, since produce.Encoder
	// refuses it (it validates with the same decoder).
	badNative := map[string]any{"user_id": "user-bad", "merchant_id": "m1", "amount": 1e300, "currency": "EUR", "ts": now.Add(-time.Minute).UnixMilli()}
	if _, err := enc.Record(badNative); err == nil || !strings.Contains(err.Error(), events.ReasonFilterError) {
		t.Fatalf("produce.Encoder accepted a record whose where fails, or failed otherwise: %v", err)
	}
	badValue, err := src.Schema.Encode(nil, badNative)
	if err != nil {
		t.Fatal(err)
	}
	// And the same for a key with valid events, to show the unfiltered
	// txn_sum_1d does not take it either (it would be 1e300).
	badOfKnown := map[string]any{"user_id": "user-000", "merchant_id": "m1", "amount": 1e300, "currency": "EUR", "ts": now.Add(-time.Minute).UnixMilli()}
	badValue2, err := src.Schema.Encode(nil, badOfKnown)
	if err != nil {
		t.Fatal(err)
	}
	// The bad records go in the middle of the stream (txnOf -1), the
	// others map to their transaction.
	mid := len(recs) / 2
	txnOf := make([]int, 0, len(recs)+2)
	for i := range recs {
		if i == mid {
			txnOf = append(txnOf, -1, -1)
		}
		txnOf = append(txnOf, i)
	}
	recs = append(recs[:mid:mid], append([]*kgo.Record{
		{Topic: src.Topic, Key: []byte("user-bad"), Value: badValue},
		{Topic: src.Topic, Key: []byte("user-000"), Value: badValue2},
	}, recs[mid:]...)...)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	byKey := map[string][]txn{}
	for i, r := range recs {
		if txnOf[i] < 0 {
			continue // dead-lettered: in no brute force
		}
		e := txns[txnOf[i]]
		e.seq = aggregations.Seq(r.Partition, r.Offset)
		byKey[e.key] = append(byKey[e.key], e)
	}
	keys := append(allKeys(users), "user-bad")

	// Online: every value equals the brute force once the worker caught up.
	const timeout = 90 * time.Second
	n := waitFiltered(t, ls, cfg, keys, byKey, timeout)
	t.Logf("lookup: %d values equal the brute force", n)
	kept := 0
	for _, e := range txns {
		if filterPredicates["txn_big_sum_7d@1"](e) {
			kept++
		}
	}
	if kept == 0 || kept == len(txns) {
		t.Fatalf("the where keeps %d of %d transactions; the test needs both kinds", kept, len(txns))
	}

	// The record whose where failed is dead-lettered, once each, with
	// reason filter_error, naming the feature.
	dead := readDeadLetters(t, k.Brokers, cfg.Kafka.DeadLetterTopic, 2, timeout)
	for _, r := range dead {
		if got := header(r, worker.HeaderReason); got != events.ReasonFilterError {
			t.Errorf("dead letter of key %s: reason %q, want %q", r.Key, got, events.ReasonFilterError)
		}
		if msg := header(r, worker.HeaderError); !strings.Contains(msg, "txn_odd_max_30d@1") || !strings.Contains(msg, "int(amount) % 3 != 0") {
			t.Errorf("dead letter of key %s: error %q does not name the feature and its where", r.Key, msg)
		}
	}

	// Backfill: the same values as of several times.
	var ids []string
	for _, f := range cfg.Features {
		ids = append(ids, f.ID)
	}
	var points []backfill.Point
	for _, key := range keys {
		for _, ago := range []time.Duration{0, 2 * time.Hour, 3 * 24 * time.Hour, 20 * 24 * time.Hour} {
			points = append(points, backfill.Point{Key: key, T: now.Add(-ago).UnixMilli()})
		}
	}
	vals, err := backfill.Compute(ctx, backfill.Options{Brokers: k.Brokers, Config: cfg, Features: ids}, points)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for r, pt := range points {
		for c, f := range vals.Features {
			got, ok := vals.Get(r, c)
			want, wantOK, _ := filteredWant(f, byKey[pt.Key], pt.T)
			if ok != wantOK || (ok && !aggtest.Close(got, want)) {
				bad = append(bad, mismatch{key: pt.Key, feature: f.ID, got: &got, want: want, wantOK: wantOK}.String())
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("backfill: %d of %d values differ from the brute force, e.g.:\n%s", len(bad), len(points)*len(vals.Features), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	if vals.Events.Rejected[events.ReasonFilterError] != 2 {
		t.Errorf("backfill rejected %v, want 2 %s", vals.Events.Rejected, events.ReasonFilterError)
	}
}

// compareFiltered looks every feature of keys up and compares it with
// filteredWant. It returns the differences and the number of values compared.
func compareFiltered(t *testing.T, ls *lookupServer, cfg *config.File, keys []string, byKey map[string][]txn) ([]string, int) {
	t.Helper()
	resp, bad := lookupAll(t, ls, cfg, keys, byID)
	if bad != nil {
		return []string{bad[0].String()}, 0
	}
	if len(resp.Results) != len(keys) {
		return []string{fmt.Sprintf("%d results for %d keys", len(resp.Results), len(keys))}, 0
	}
	T := resp.AsOf.UnixMilli()
	var out []string
	n := 0
	for i, r := range resp.Results {
		for _, f := range cfg.Features {
			fv, present := r.Features[f.ID]
			if r.Key != keys[i] || !present {
				out = append(out, fmt.Sprintf("%s %s: missing from the answer", keys[i], f.ID))
				continue
			}
			n++
			want, ok, status := filteredWant(f, byKey[r.Key], T)
			if got := fv.Value; (got != nil) != ok || (ok && !aggtest.Close(*got, want)) {
				out = append(out, mismatch{key: r.Key, feature: f.ID, got: got, want: want, wantOK: ok}.String())
			} else if fv.Status != status && fv.Status != lookup.StatusWarmingUp {
				out = append(out, fmt.Sprintf("%s %s: status %s, want %s", r.Key, f.ID, fv.Status, status))
			}
		}
	}
	return out, n
}

// genTxns returns n transactions of users keys (amounts and currencies on
// both sides of the wheres, event times over the 40 days before now, in
// random order) and their records, unproduced.
func genTxns(t *testing.T, enc *produce.Encoder, rng *rand.Rand, n, users int, now time.Time) ([]txn, []*kgo.Record) {
	t.Helper()
	currencies := []string{"EUR", "USD", "JPY"}
	var txns []txn
	var recs []*kgo.Record
	for range n {
		age := time.Duration(rng.Int64N(int64(40 * 24 * time.Hour)))
		if rng.IntN(4) == 0 {
			age = time.Duration(rng.Int64N(int64(3 * time.Hour)))
		}
		e := txn{key: fmt.Sprintf("user-%03d", rng.IntN(users)), ts: now.Add(-age - time.Second).UnixMilli(),
			amount: float64(rng.IntN(1_000_000)) / 100, currency: currencies[rng.IntN(len(currencies))]}
		r, err := enc.Record(map[string]any{"user_id": e.key, "merchant_id": "m1", "amount": e.amount, "currency": e.currency, "ts": e.ts})
		if err != nil {
			t.Fatal(err)
		}
		txns, recs = append(txns, e), append(recs, r)
	}
	return txns, recs
}

// produceTxns produces txns (records recs) and adds them, with their
// offsets, to byKey.
func produceTxns(t *testing.T, cl *kgo.Client, txns []txn, recs []*kgo.Record, byKey map[string][]txn) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for i, r := range recs {
		e := txns[i]
		e.seq = aggregations.Seq(r.Partition, r.Offset)
		byKey[e.key] = append(byKey[e.key], e)
	}
}

// waitFiltered polls the lookup service until every value of keys equals
// filteredWant and the service is ready, failing after timeout.
func waitFiltered(t *testing.T, ls *lookupServer, cfg *config.File, keys []string, byKey map[string][]txn, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bad, n := compareFiltered(t, ls, cfg, keys, byKey)
		if len(bad) == 0 && n == len(keys)*len(cfg.Features) && ls.ready() {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d values compared; differences from the brute force, e.g.:\n%s", timeout, n, strings.Join(bad[:min(len(bad), 10)], "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var filterVersionsV1 = testkit.KafkaSection(3) + `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: txn_big_sum_7d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d, where: "amount > 5000.0 && currency != 'JPY'"}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
`

// TestFilteredVersionBootstraps: a where is part of a feature's definition
// (changing it under the same version is refused, naming where), and a new
// version with another where bootstraps from the topic's history beside the
// old one, both ending equal to the Go brute force.
func TestFilteredVersionBootstraps(t *testing.T) {
	k, cfg1, cl := setup(t, filterVersionsV1)
	dir := t.TempDir()
	const users = 40
	rng := rand.New(rand.NewPCG(12, 2))
	enc, err := produce.NewEncoder(cfg1, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]txn{}
	txns, recs := genTxns(t, enc, rng, 3000, users, time.Now())
	produceTxns(t, cl, txns, recs, byKey)
	stop1 := runWorker(t, k.Brokers, cfg1, filepath.Join(dir, "worker"))
	ls1, stopLookup1 := runLookup(t, k.Brokers, cfg1, filepath.Join(dir, "view1"))
	waitFiltered(t, ls1, cfg1, allKeys(users), byKey, time.Minute)
	stop1()
	stopLookup1()

	changed := strings.Replace(filterVersionsV1, "amount > 5000.0", "amount > 4000.0", 1)
	bad := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: writeConfig(t, sameTopics(changed, cfg1))}, filepath.Join(dir, "other"))
	select {
	case err := <-bad.done:
		if !errors.Is(err, registry.ErrDefinitionChanged) || !strings.Contains(err.Error(), "where") {
			t.Fatalf("want a refusal naming where, got: %v", err)
		}
	case <-time.After(30 * time.Second):
		bad.stop()
		t.Fatal("a worker with a changed where under the same version kept running")
	}
	bad.stop()

	v2 := strings.Replace(filterVersionsV1, "features:\n", "features:\n"+
		`  - {name: txn_big_sum_7d, version: 2, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d, where: "amount > 2000.0 || currency == 'JPY'"}`+"\n", 1)
	cfg2 := writeConfig(t, sameTopics(v2, cfg1))
	ls2, _ := runLookup(t, k.Brokers, cfg2, filepath.Join(dir, "view2"))
	runWorker(t, k.Brokers, cfg2, filepath.Join(dir, "worker"))
	for range 3 { // events stream in while @2 bootstraps
		txns, recs := genTxns(t, enc, rng, 500, users, time.Now())
		produceTxns(t, cl, txns, recs, byKey)
	}
	n := waitFiltered(t, ls2, cfg2, allKeys(users), byKey, 2*time.Minute)
	t.Logf("txn_big_sum_7d@2 bootstrapped beside @1: %d values equal the brute force", n)
}
