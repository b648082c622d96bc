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
	st, err := lookup.OpenStore(dir, state.Options{NoSync: true})
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
	stateful := 0 // a derived feature has no state: it is in no snapshot
	for _, f := range cfg.Features {
		if !f.IsDerived() {
			stateful++
		}
	}
	if len(first.Sources) == 0 || len(first.FeatureLog) == 0 || len(first.Features) != stateful {
		t.Fatalf("snapshot manifest: %+v", first)
	}
	for _, sp := range first.Sources {
		if sp.NextOffset <= 0 || sp.MaxEventTime <= 0 {
			t.Fatalf("source partition in manifest: %+v", sp)
		}
	}
	assertMaxEventTimes(t, cfg, first, p)

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

	// A second snapshot: a replica cold started from it while it is intact
	// replays only what was published after it.
	second := takeSnapshot(t, w)
	newest, newestSvc := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "newest"), store)
	waitExact(t, newest, cfg, p, allKeys(users), time.Minute)

	// Then corrupted: the next cold start must skip it.
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
	// Nor from the corrupt second one: it replayed what was published
	// between the two snapshots on top of what the replica started from the
	// intact second one did (which has applied the last events by now too).
	waitExact(t, newest, cfg, p, allKeys(users), time.Minute)
	fromFirst, fromSecond := testutil.ToFloat64(againSvc.Metrics().LogRecords), testutil.ToFloat64(newestSvc.Metrics().LogRecords)
	if fromFirst <= fromSecond {
		t.Fatalf("the replica that skipped the corrupt snapshot applied %v feature-log records, not more than the %v of one started from it while intact: the corrupt snapshot was loaded",
			fromFirst, fromSecond)
	}
	t.Logf("corrupt snapshot %s skipped for %s; %d values equal brute force; %v feature-log records applied, %v from the intact second",
		second.ID, first.ID, n, fromFirst, fromSecond)
}

// assertMaxEventTimes checks that the manifest's highest event time per
// source topic (over its partitions) is the newest event produced to it:
// every produced event is recent enough to be held by the state.
func assertMaxEventTimes(t testing.TB, cfg *config.File, m *snapshot.Manifest, p *produced) {
	t.Helper()
	got := map[string]int64{}
	for _, sp := range m.Sources {
		src, ok := cfg.SourceByTopic(sp.Topic)
		if !ok {
			t.Fatalf("manifest names topic %s, no source of the feature file", sp.Topic)
		}
		if v, seen := got[src.Name]; !seen || sp.MaxEventTime > v {
			got[src.Name] = sp.MaxEventTime
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for source, byKey := range p.events {
		want := int64(-1)
		for _, evs := range byKey {
			for _, e := range evs {
				want = max(want, e.TS)
			}
		}
		if got[source] != want {
			t.Errorf("manifest's max event time of source %s: %d, want the newest event produced, %d", source, got[source], want)
		}
	}
}
