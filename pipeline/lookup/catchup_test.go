package lookup

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/featurelog"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// The view is caught up when its read position reaches the end offsets
// seen at start, not when it sees a record at end-1: here the feature log's
// last entry is a transaction's commit marker (no record at end-1), and the
// replica must still become ready, with the committed tile applied.
func TestViewCatchesUpOverATransactionMarker(t *testing.T) {
	c := newTestCluster(t, 1)
	cfg := loadTestConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, cfg); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(cfg.Kafka.FeatureLogTopic),
		kgo.TransactionalID("catchup-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	T := fixtureNow.UnixMilli()
	const count = "txn_count_7d@1"
	start := aggregations.Window{Size: 7 * aggregations.Day, Hop: 6 * aggregations.Hour}.TileStart(T - aggregations.Hour)
	r := &kgo.Record{}
	_, r.Key, r.Value = featurelog.Append(nil, keys.TileRef{Entity: "user", EntityKey: "u1", FeatureID: count, Start: start},
		aggregations.Tile{Start: start, IR: aggregations.IR{Count: 4}}, true)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	st := openTestStore(t)
	svc, err := New(Options{Brokers: c.ListenAddrs(), Config: cfg, Store: st, LookupLogSample: NoLookupLog,
		Now: func() time.Time { return fixtureNow }})
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, svc)
	waitReady(t, svc, 30*time.Second, "the replica is not ready 30s after start: the feature log's tail is a transaction marker, and its catch-up waits for a record at end-1")
	e := new(entityView)
	found, err := svc.load("user", "u1", e, nil, nil)
	if err != nil || !found {
		t.Fatalf("u1 in the view: found %v, %v", found, err)
	}
	i := e.index(count, 0)
	if i < 0 {
		t.Fatalf("u1 has no %s series in the view", count)
	}
	if got, ok := e.series[i].Tile(start); !ok || got.IR.Count != 4 {
		t.Fatalf("u1's %s tile: %+v (found %v), want count 4", count, got, ok)
	}
}
