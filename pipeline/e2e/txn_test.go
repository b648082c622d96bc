package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

// produceTxn produces recs in one transaction of a transactional producer
// (id) and commits or aborts it.
func produceTxn(t *testing.T, brokers []string, id string, commit bool, recs []*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(append(kafka.BaseOpts(brokers, "featurepipe-test-txn", nil), kgo.TransactionalID(id))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

// TestAbortedTransactionsAreNotApplied: records of aborted transactions in a
// source topic never reach a feature (the worker reads read-committed),
// whether they precede the worker's start or arrive while it runs, while
// committed transactions count. The lookups are compared with the brute
// force over the committed events only; one user has events in aborted
// transactions only and must stay NOT_FOUND.
func TestAbortedTransactionsAreNotApplied(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 5))
	const users = 40
	p := newProduced()
	now := time.Now()
	evs := genEvents(rng, 600, users, 10*24*time.Hour, now)
	produceEvents(t, ctx, cl, cfg, evs[:300], p)

	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	txnRecs := func(n int, key string) ([]*kgo.Record, []event) {
		var recs []*kgo.Record
		var es []event
		for i := 0; i < n; i++ {
			e := event{source: "transactions", key: key, ts: now.Add(-time.Duration(1+rng.IntN(48)) * time.Hour).UnixMilli(), amount: 1e6 + float64(i)}
			if e.key == "" {
				e.key = evs[rng.IntN(len(evs))].key
			}
			r, err := enc.Record(testkit.Event(e.source, e.key, e.ts, e.amount))
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
			es = append(es, e)
		}
		return recs, es
	}
	abort := func(id string, n int, key string) {
		recs, _ := txnRecs(n, key)
		produceTxn(t, k.Brokers, id, false, recs)
	}
	// Aborted before the worker starts (read in its first batches), a
	// committed one, and aborted ones with a user seen nowhere else.
	abort("aborted-1", 50, "")
	committed, ces := txnRecs(20, "")
	produceTxn(t, k.Brokers, "committed-1", true, committed)
	p.mu.Lock()
	for i, r := range committed {
		p.addLocked(cfg, "transactions", ces[i].key, aggregations.Event{TS: ces[i].ts, Seq: aggregations.Seq(r.Partition, r.Offset), Value: ces[i].amount})
	}
	p.mu.Unlock()
	abort("aborted-2", 10, "user-ghost")

	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	// Aborted while the worker runs, between committed events.
	produceEvents(t, ctx, cl, cfg, evs[300:450], p)
	abort("aborted-3", 50, "")
	produceEvents(t, ctx, cl, cfg, evs[450:], p)

	keys := append(allKeys(users), "user-ghost")
	n := waitExact(t, ls, cfg, p, keys, 90*time.Second)
	t.Logf("%d committed events, 110 aborted: %d feature values equal the brute force over the committed ones", p.total, n)
}
