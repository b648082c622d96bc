package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// snapshottingWorker runs an in-process worker that writes snapshots to
// store on request.
func snapshottingWorker(t testing.TB, brokers []string, cfg *config.File, dir string, store *snapshot.Store) *worker.Worker {
	t.Helper()
	w, _ := startWorker(t, worker.Options{Brokers: brokers, Config: cfg, Snapshots: store, SnapshotEvery: time.Hour}, dir)
	return w
}

// newSnapshotStore opens a directory snapshot store under dir.
func newSnapshotStore(t testing.TB, dir string) (*snapshot.Store, *snapshot.DirBackend) {
	t.Helper()
	backend, err := snapshot.NewDirBackend(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return snapshot.NewStore(backend, 5), backend
}

// takeSnapshot asks w for a snapshot and waits for its manifest.
func takeSnapshot(t testing.TB, w *worker.Worker) *snapshot.Manifest {
	t.Helper()
	before := w.LastSnapshot()
	w.RequestSnapshot()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m := w.LastSnapshot(); m != nil && m != before {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no snapshot written within a minute")
	return nil
}

// runLookupFrom is runLookup with a snapshot store for cold starts.
func runLookupFrom(t testing.TB, brokers []string, cfg *config.File, dir string, store *snapshot.Store) (*lookupServer, *lookup.Service) {
	t.Helper()
	st, err := state.Open(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lookup.New(lookup.Options{Brokers: brokers, Config: cfg, Store: st, Snapshots: store})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, st)
	return ls, svc
}

// TestSnapshotRoundTripAndCorruptSnapshotSkipped: a lookup replica cold
// started from a worker's snapshot answers exactly what one that replayed
// the whole feature log answers, after catching up with events published
// after the snapshot; a corrupt newest snapshot is skipped for the previous
// one.
func TestSnapshotRoundTripAndCorruptSnapshotSkipped(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	store, backend := newSnapshotStore(t, dir)
	const users = 200
	rng := rand.New(rand.NewPCG(51, 52))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 10000, users, 40*24*time.Hour, time.Now()), p)
	w := snapshottingWorker(t, k.Brokers, cfg, filepath.Join(dir, "worker"), store)
	full, fullSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "full"), nil)
	waitExact(t, full, cfg, p, allKeys(users), time.Minute)
	first := takeSnapshot(t, w)
	if len(first.Sources) == 0 || len(first.FeatureLog) == 0 || len(first.Features) != len(cfg.Features) {
		t.Fatalf("snapshot manifest: %+v", first)
	}
	for _, sp := range first.Sources {
		if sp.NextOffset <= 0 || sp.MaxEventTime <= 0 {
			t.Fatalf("source partition in manifest: %+v", sp)
		}
	}

	// Events after the snapshot reach a cold-started replica through the log.
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)
	waitExact(t, full, cfg, p, allKeys(users), time.Minute)
	cold, coldSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "cold"), store)
	n := waitExact(t, cold, cfg, p, allKeys(users), time.Minute)
	replayed := testutil.ToFloat64(coldSvc.Metrics().LogRecords)
	all := testutil.ToFloat64(fullSvc.Metrics().LogRecords)
	if replayed >= all {
		t.Fatalf("the cold-started replica applied %v feature-log records, as many as a full replay (%v): the snapshot was not used", replayed, all)
	}
	t.Logf("cold start from snapshot %s: %d values equal brute force after applying %v of %v feature-log records", first.ID, n, replayed, all)

	// A second snapshot, corrupted: the next cold start must skip it.
	second := takeSnapshot(t, w)
	victim := filepath.Join(backend.Dir(), second.ID, second.Sources[0].File)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.Verify(ctx, second); err == nil {
		t.Fatal("the corrupted snapshot verifies")
	}
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
	again, againSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "again"), store)
	n = waitExact(t, again, cfg, p, allKeys(users), time.Minute)
	// It started from the first snapshot, not from a full replay.
	if got, all := testutil.ToFloat64(againSvc.Metrics().LogRecords), testutil.ToFloat64(fullSvc.Metrics().LogRecords); got >= all {
		t.Fatalf("after skipping the corrupt snapshot the replica replayed the whole log (%v of %v records)", got, all)
	}
	t.Logf("corrupt snapshot %s skipped for %s; %d values equal brute force", second.ID, first.ID, n)
}
