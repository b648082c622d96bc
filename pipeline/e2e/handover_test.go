package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// eventsApplied is the number of events w applied (or replayed into new
// state) since it started, over every source of the feature file.
func eventsApplied(w *worker.Worker) int {
	m := w.Metrics()
	return int(testutil.ToFloat64(m.EventsIn.WithLabelValues("transactions")) + testutil.ToFloat64(m.EventsIn.WithLabelValues("logins")))
}

// waitFor polls cond every 20ms until it holds, failing the test after
// timeout with what.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitQuiet waits until value has not changed for quiet (and fails after
// timeout): a worker that stopped applying and publishing.
func waitQuiet(t testing.TB, what string, quiet, timeout time.Duration, value func() float64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := value(), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s still changing", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
		if v := value(); v != last {
			last, since = v, time.Now()
		}
	}
}

// TestRevokedPartitionsArePublishedBeforeTheHandOver is issue 10 item 1: a
// worker that holds unpublished tiles when partitions are revoked from it
// must publish them before the rebalance completes and never after. Worker
// A applies events but publishes only once an hour (so its tiles are always
// pending, and the rebalance reaches it while it waits for records, where no
// "rebalance blocked" signal fires); worker B joins and takes half the
// partitions, which it replays from the start and publishes with newer
// events. Then A stops cleanly and B takes everything. Before the fix, A's
// stop published the revoked partitions' older tiles after B's newer ones,
// and the older values won in the compacted feature log.
func TestRevokedPartitionsArePublishedBeforeTheHandOver(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	const users = 300
	rng := rand.New(rand.NewPCG(17, 10))
	p := newProduced()

	// FixedPublishInterval: no adaptive publication of a light stream.
	a := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, PublishInterval: time.Hour, FixedPublishInterval: true}, filepath.Join(dir, "a"))
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 6000, users, 40*24*time.Hour, time.Now()), p)
	waitFor(t, "worker A applies the first 6000 events", time.Minute, func() bool { return eventsApplied(a.w) == p.total })
	if got := testutil.ToFloat64(a.w.Metrics().TilesPublished); got != 0 {
		t.Fatalf("worker A published %v tiles with a one-hour publish interval; the test needs them pending", got)
	}

	b := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "b"))
	const parts = 8 // two source topics of 4 partitions
	assigned := func(w *worker.Worker) float64 { return testutil.ToFloat64(w.Metrics().Assigned) }
	waitFor(t, "B owns some partitions and A the others", time.Minute, func() bool {
		return assigned(b.w) > 0 && assigned(a.w) > 0 && assigned(a.w)+assigned(b.w) == parts
	})
	handedOver := testutil.ToFloat64(a.w.Metrics().TilesPublished)
	t.Logf("rebalance: A kept %v partitions, B took %v; A published %v tiles of the revoked partitions on revoke",
		assigned(a.w), assigned(b.w), handedOver)

	// Newer events for every entity: B publishes newer values of the tiles
	// A still held unpublished before the fix.
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 6000, users, 40*24*time.Hour, time.Now()), p)
	waitQuiet(t, "worker B's applying and publishing", 2*time.Second, time.Minute, func() float64 {
		return float64(eventsApplied(b.w)) + testutil.ToFloat64(b.w.Metrics().TilesPublished)
	})
	a.stop() // a clean stop publishes what A still holds
	n := waitExact(t, ls, cfg, p, allKeys(users), time.Minute)
	t.Logf("%d values equal brute force after the hand-over", n)
}

// TestOwnerBehindThePublishedMarkPublishesNothingOlder: a worker whose own
// store is older than what the feature log holds (each worker resumes from
// its own Pebble offsets) catches up without publishing: the values it
// computes on the way are older than the feature log's. Worker A applies
// and publishes every event and stops cleanly, committing its published
// marks; worker B starts on an empty store, replays all of it, and must
// publish nothing until new events arrive. Before the fix B published every
// tile again on the way; had the partitions then moved back to A, which
// resumes past those records, the older values would have stayed (the
// rebalance test caught that as values off by an event or three).
func TestOwnerBehindThePublishedMarkPublishesNothingOlder(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	const users = 200
	rng := rand.New(rand.NewPCG(23, 5))
	p := newProduced()
	keys := allKeys(users)

	a := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "a"))
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 6000, users, 40*24*time.Hour, time.Now()), p)
	waitExact(t, ls, cfg, p, keys, time.Minute)
	if testutil.ToFloat64(a.w.Metrics().TilesPublished) == 0 {
		t.Fatal("worker A published nothing")
	}
	a.stop()

	b := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "b"))
	waitFor(t, "worker B replays every event", time.Minute, func() bool { return eventsApplied(b.w) == p.total })
	// Past several publish intervals (200ms): whatever B would publish of
	// the replay is flushed by now.
	waitQuiet(t, "worker B's publishing", time.Second, time.Minute, func() float64 {
		return testutil.ToFloat64(b.w.Metrics().TilesPublished)
	})
	if got := testutil.ToFloat64(b.w.Metrics().TilesPublished); got != 0 {
		t.Fatalf("worker B published %v feature-log records while catching up below the published marks; want 0", got)
	}

	// New events: B publishes their tiles, and every value is exact.
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 200, users, 40*24*time.Hour, time.Now()), p)
	n := waitExact(t, ls, cfg, p, keys, time.Minute)
	published := testutil.ToFloat64(b.w.Metrics().TilesPublished)
	if published == 0 {
		t.Fatal("worker B published nothing of the new events")
	}
	t.Logf("B replayed %d events publishing nothing, then published %v records for 200 new ones; %d values equal brute force", p.total-200, published, n)
}
