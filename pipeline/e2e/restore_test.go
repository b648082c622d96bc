package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestNewWorkerRestoresPartitionsFromSnapshots: the source topics lose
// their old records (retention, simulated with DeleteRecords up to the
// snapshot's offsets) and the worker that computed them is gone. A new
// worker with an empty store takes the partitions over from the snapshot
// rather than from the earliest retained offset, so every value (30-day and
// lifetime windows included) still equals the brute force over all events.
func TestNewWorkerRestoresPartitionsFromSnapshots(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	store, _ := newSnapshotStore(t, dir)
	const users = 100
	rng := rand.New(rand.NewPCG(81, 82))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 8000, users, 40*24*time.Hour, time.Now()), p)

	// Worker A computes everything, snapshots, and goes away.
	a, stopA := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Snapshots: store, SnapshotEvery: time.Hour}, filepath.Join(dir, "a"))
	snap := snapshotOfAll(t, ctx, a, cl, cfg)
	stopA()

	// Retention drops every record the snapshot holds.
	del := kadm.Offsets{}
	for _, sp := range snap.Sources {
		del.AddOffset(sp.Topic, sp.Partition, sp.NextOffset, -1)
	}
	resp, err := kadm.NewClient(cl).DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}

	// Worker B, empty store, same group; more events arrive.
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, Snapshots: store}, filepath.Join(dir, "b"))
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	n := waitExact(t, ls, cfg, p, allKeys(users), time.Minute)
	t.Logf("a new worker restored %d partitions from snapshot %s after retention removed their records: %d values equal brute force over all %d events",
		len(snap.Sources), snap.ID, n, p.total)
}
