package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// publications is the number of publications w made, by trigger, and
// their total.
func publications(w *worker.Worker) (map[string]float64, float64) {
	out := map[string]float64{}
	total := 0.0
	for _, tr := range []string{"caught_up", "interval", "cache_full", "revoke", "shutdown", "snapshot", "republish"} {
		v := testutil.ToFloat64(w.Metrics().Publications.WithLabelValues(tr))
		out[tr] = v
		total += v
	}
	return out, total
}

// TestLightStreamIsPublishedBeforeTheInterval: adaptive publication. With a
// one-minute publish interval, a single event on an idle stream (a light
// stream: the poll catches up with its partition) is published as soon as
// its poll is applied, so a lookup replica serves it within 20s (in
// milliseconds, unless the machine is very busy); without adaptive
// publication it would wait for the interval, and no publication would
// count as caught_up.
func TestLightStreamIsPublishedBeforeTheInterval(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	const interval = time.Minute
	w, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg, PublishInterval: interval}, filepath.Join(dir, "w"))
	waitFor(t, "the worker owns every partition", time.Minute, func() bool {
		return testutil.ToFloat64(w.Metrics().Assigned) == float64(2*cfg.Kafka.Partitions)
	})
	p := newProduced()
	rng := rand.New(rand.NewPCG(31, 7))
	for i := range 3 {
		// Each event well after the worker's last publication: the interval
		// restarts at each one, so only adaptive publication shows it soon.
		sent := time.Now()
		produceEvents(t, ctx, cl, cfg, genEvents(rng, 1, 50, 24*time.Hour, time.Now()), p)
		waitExact(t, ls, cfg, p, allKeys(50), interval/3)
		t.Logf("event %d visible in the lookup replica after %s", i+1, time.Since(sent).Round(time.Millisecond))
	}
	by, _ := publications(w)
	if by["caught_up"] < 3 {
		t.Fatalf("publications by trigger %v: want at least 3 caught_up", by)
	}
}

// TestBacklogIsPublishedInBatches: under load (a backlog, polls that stop
// short of their partitions' ends) the worker does not publish after every
// poll: with a 10s interval and polls of 500 to 1,000 records (records
// for about MaxPollRecords 500 entities, at most the entity caches' room:
// MaxCachedEntities 1,000 less the entities cached), replaying 40,000
// events takes some 40+ batches but only a few publications (the polls that
// reached the end of everything, a full cache, and the interval).
func TestBacklogIsPublishedInBatches(t *testing.T) {
	w := replayBacklog(t, 3, 40_000, 500, worker.Options{PublishInterval: 10 * time.Second, MaxPollRecords: 500, MaxCachedEntities: 1000})
	batches := float64(batchEvents(t, w).GetSampleCount())
	by, total := publications(w)
	t.Logf("%v batches committed, %v publications by trigger %v", batches, total, by)
	if batches < 40 {
		t.Fatalf("only %v batches: the test needs a backlog of many polls", batches)
	}
	// After every poll would be one per batch; the bound leaves room for
	// polls that happened to end at every partition's end mid-replay.
	if total > batches/4 {
		t.Fatalf("%v publications for %v batches of a backlog (by trigger %v): want at most a quarter", total, batches, by)
	}
}

// TestBacklogOfFewEntitiesTakesLargerPolls: in a backlog whose records bring
// few entities (a replay of history), a poll takes records for about
// MaxPollRecords entities, so batches of more than MaxPollRecords events
// (Worker.pollSize: here up to 5 × 200), and every value stays exact.
func TestBacklogOfFewEntitiesTakesLargerPolls(t *testing.T) {
	const maxPoll, users = 200, 20
	h := batchEvents(t, replayBacklog(t, 4, 20_000, users, worker.Options{MaxPollRecords: maxPoll}))
	mean := h.GetSampleSum() / float64(h.GetSampleCount())
	t.Logf("%d batches, %.0f events each on average", h.GetSampleCount(), mean)
	if mean <= 2*maxPoll {
		t.Fatalf("batches of %.0f events on average over %d batches: want more than twice MaxPollRecords (%d) in a backlog of %d entities", mean, h.GetSampleCount(), maxPoll, users)
	}
}

// TestEvictedEntitiesArePrefetched: in a backlog of many more entities than
// the entity caches hold (MaxCachedEntities), a batch loads the entities
// it needs from the state store in parallel before applying its records
// (Worker.prefetch) rather than one at a time, and every value stays exact
// (replayBacklog compares a lookup replica's values with the events).
func TestEvictedEntitiesArePrefetched(t *testing.T) {
	w := replayBacklog(t, 5, 10_000, 1_000, worker.Options{MaxPollRecords: 250, MaxCachedEntities: 100})
	single := testutil.ToFloat64(w.Metrics().EntityLoads.WithLabelValues("single"))
	prefetched := testutil.ToFloat64(w.Metrics().EntityLoads.WithLabelValues("prefetch"))
	t.Logf("entities loaded: %v prefetched, %v one at a time", prefetched, single)
	// A partition's first batch prefetches; after a batch that found most
	// of its entities cached, the next one loads one at a time.
	if prefetched == 0 || prefetched < 2*single {
		t.Fatalf("%v entities prefetched and %v loaded one at a time: want most prefetched in a backlog of 1,000 entities with 100 cached", prefetched, single)
	}
}

// replayBacklog produces events events of users users (event times over the
// last 30 days, seeded by seed) before starting a worker with o (its
// brokers and feature file set here), and returns it once it has applied
// them all and a lookup replica serves every value exactly.
func replayBacklog(t *testing.T, seed uint64, events, users int, o worker.Options) *worker.Worker {
	t.Helper()
	k, cfg, cl := setup(t, featureFile)
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	p := newProduced()
	produceEvents(t, context.Background(), cl, cfg, genEvents(rand.New(rand.NewPCG(37, seed)), events, users, 30*24*time.Hour, time.Now()), p)
	o.Brokers, o.Config = k.Brokers, cfg
	w, _ := startWorker(t, o, filepath.Join(dir, "w"))
	waitFor(t, "the worker applies the backlog", 2*time.Minute, func() bool { return eventsApplied(w) == p.total })
	waitExact(t, ls, cfg, p, allKeys(users), time.Minute)
	return w
}

// batchEvents is w's histogram of events per committed batch.
func batchEvents(t *testing.T, w *worker.Worker) *dto.Histogram {
	t.Helper()
	var m dto.Metric
	if err := w.Metrics().BatchEvents.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram()
}
