package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// produceTxn produces recs in one transaction of a transactional producer
// (id) and commits or aborts it.
func produceTxn(t *testing.T, brokers []string, id string, commit bool, recs []*kgo.Record) {
	t.Helper()
	cl, err := kafka.NewClient(kafka.Conn{Brokers: brokers}, "featurepipe-test-txn", nil, kgo.TransactionalID(id))
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

// TestBootstrapEndsOverATransactionMarker: a new feature version's
// bootstrap ends by read position at the offset where the live stream
// started applying it, even when no committed record sits just below that
// offset. Here every source partition ends with an aborted transaction (its
// records, then the abort marker) that a worker of an older featurepipe,
// which read uncommitted, applied: its applied offset is the marker's. The
// read-committed bootstrap of spend@2 sees no record at applied-1; it must
// still end, spend@2 become ready in every partition, and its values equal
// the brute force over the committed events.
func TestBootstrapEndsOverATransactionMarker(t *testing.T) {
	k, cfg1, cl := setup(t, versionsV1)
	ctx := context.Background()
	dir := t.TempDir()
	const users = 60
	rng := rand.New(rand.NewPCG(5, 8))
	p := newProduced()
	committed := transactionsOnly(genEvents(rng, 3000, users, 5*24*time.Hour, time.Now()))
	produceEvents(t, ctx, cl, cfg1, committed, p)
	enc, err := produce.NewEncoder(cfg1, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	var aborted []*kgo.Record
	for _, u := range allKeys(users) { // every user: every partition gets some
		r, err := enc.Record(testkit.Event("transactions", u, time.Now().Add(-time.Hour).UnixMilli(), 1e6))
		if err != nil {
			t.Fatal(err)
		}
		aborted = append(aborted, r)
	}
	produceTxn(t, k.Brokers, "aborted-tail", false, aborted)

	// The older worker: read-uncommitted, until it applied every record.
	w1, stop1 := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg1,
		ExtraOpts: []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadUncommitted())}}, filepath.Join(dir, "worker"))
	want := float64(len(committed) + len(aborted))
	deadline := time.Now().Add(time.Minute)
	for testutil.ToFloat64(w1.Metrics().EventsIn) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the read-uncommitted worker applied %v of %v records in a minute", testutil.ToFloat64(w1.Metrics().EventsIn), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop1()
	// The scenario: in every partition, the applied offset is the abort
	// marker's, the last offset of the partition.
	ends, err := kafka.EndOffsets(ctx, cl, cfg1.Sources[0].Topic)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "worker"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for part, end := range ends {
		applied, ok, err := st.GetOffset(keys.Offset(cfg1.Sources[0].Topic, part))
		if err != nil || !ok || applied != end-1 {
			t.Fatalf("partition %d: applied offset %d (%v, %v), want the abort marker's %d", part, applied, ok, err, end-1)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// spend@2 beside spend@1, on the current (read-committed) worker.
	v2 := strings.Replace(versionsV1, "features:\n", "features:\n"+versionsV2Feature, 1)
	cfg2 := writeConfig(t, sameTopics(v2, cfg1))
	ls2, _ := runLookup(t, k.Brokers, cfg2, filepath.Join(dir, "view2"))
	runWorker(t, k.Brokers, cfg2, filepath.Join(dir, "worker"))
	deadline = time.Now().Add(time.Minute)
	for {
		view, err := registry.Load(ctx, kafka.Conn{Brokers: k.Brokers}, cfg2.Kafka.RegistryTopic, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := view.Statuses("spend@2")
		if view.Ready("spend@2") && len(st) == int(cfg2.Kafka.Partitions) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spend@2 not ready in every partition a minute after the worker started (the bootstrap waits for a record below the marker): %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	only2 := *cfg2
	only2.Features = nil
	for _, f := range cfg2.Features {
		if f.ID == "spend@2" {
			only2.Features = append(only2.Features, f)
		}
	}
	n := waitExact(t, ls2, &only2, p, allKeys(users), time.Minute)
	t.Logf("spend@2 bootstrapped over a history ending in an abort marker: %d values equal the brute force over the committed events", n)
}
