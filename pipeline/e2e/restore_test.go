package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
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
	backend, err := snapshot.NewDirBackend(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	store := snapshot.NewStore(backend, 5)
	const users = 100
	rng := rand.New(rand.NewPCG(81, 82))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 8000, users, 40*24*time.Hour, time.Now()), p)

	// Worker A computes everything, snapshots, and goes away.
	stA, err := state.Open(filepath.Join(dir, "a"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: stA, Snapshots: store, SnapshotEvery: time.Hour,
		ExtraOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(actx) }()
	snap := snapshotOfAll(t, ctx, a, cl, cfg)
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	stA.Close()

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
	runWorkerWith(t, worker.Options{Brokers: k.Brokers, Config: cfg, Snapshots: store}, filepath.Join(dir, "b"))
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	n := waitExact(t, ls, cfg, p, allKeys(users), time.Minute)
	t.Logf("a new worker restored %d partitions from snapshot %s after retention removed their records: %d values equal brute force over all %d events",
		len(snap.Sources), snap.ID, n, p.total)
}

// runWorkerWith is runWorker with more options (Store is opened in dir).
func runWorkerWith(t testing.TB, o worker.Options, dir string) {
	t.Helper()
	st, err := state.Open(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	o.ExtraOpts = append(o.ExtraOpts, kgo.SessionTimeout(6*time.Second))
	w, err := worker.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		st.Close()
	})
}
