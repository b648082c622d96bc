package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

var coldStartFeatures = testkit.KafkaSection(6) + `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend_30d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
`

// coldStartTimeout bounds each wait of BenchmarkColdStart, so that a broken
// pipeline fails the benchmark instead of hanging it.
const coldStartTimeout = 10 * time.Minute

// BenchmarkColdStart measures how long a new lookup replica takes to become
// ready for COLDSTART_ENTITIES entities (default 1,000,000; 3 events each,
// 2 features): replaying the whole feature log, versus loading the newest
// snapshot and replaying only the log after it.
//
// Knobs: COLDSTART_REPLAY=0 skips the full replay; COLDSTART_SNAPSHOT_RUNS=n
// (default 1) starts n replicas from the snapshot, one after the other, each
// into an empty store, and reports the fastest and the slowest;
// COLDSTART_PROFILE=prefix writes a CPU profile (prefix.cpu) and the
// allocations (prefix.allocs, a heap profile: compare it with
// prefix.allocs.base, taken just before) of the first snapshot start only.
func BenchmarkColdStart(b *testing.B) {
	entities := envInt(b, "COLDSTART_ENTITIES", 1_000_000)
	replay := os.Getenv("COLDSTART_REPLAY") != "0"
	snapRuns := envInt(b, "COLDSTART_SNAPSHOT_RUNS", 1)
	profile := os.Getenv("COLDSTART_PROFILE")
	k, cfg, cl := setup(b, coldStartFeatures)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	now := time.Now()
	produceTransactions(b, cl, cfg, entities*3, func(i int) (string, int64) {
		return fmt.Sprintf("user-%07d", i%entities), now.Add(-time.Duration(rng.Int64N(int64(10 * 24 * time.Hour)))).UnixMilli()
	})
	dir := b.TempDir()
	store, _ := newSnapshotStore(b, dir)
	w := snapshottingWorker(b, k.Brokers, cfg, filepath.Join(dir, "worker"), store)
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	deadline := time.Now().Add(coldStartTimeout)
	for testutil.ToFloat64(in) < float64(entities*3) {
		if time.Now().After(deadline) {
			b.Fatalf("the worker consumed only %v of %d events in %s", testutil.ToFloat64(in), entities*3, coldStartTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := takeSnapshot(b, w)
	b.Logf("snapshot %s of %d entities written", m.ID, entities)

	ready := func(name string, snaps *snapshot.Store, prof string) time.Duration {
		st, err := lookup.OpenStore(filepath.Join(dir, name), state.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: st, Snapshots: snaps, LookupLogSample: lookup.NoLookupLog})
		if err != nil {
			b.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		stopProfile := startProfile(b, prof)
		start := time.Now()
		go func() { done <- svc.Run(cctx) }()
		for !svc.Ready() {
			select {
			case err := <-done:
				b.Fatalf("%s: the lookup service stopped before it was ready: %v", name, err)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Since(start) > coldStartTimeout {
				cancel()
				<-done
				b.Fatalf("%s: not ready after %s", name, coldStartTimeout)
			}
		}
		took := time.Since(start)
		stopProfile()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: ready after %s, %v feature-log records applied", name, took.Round(time.Millisecond), testutil.ToFloat64(svc.Metrics().LogRecords))
		return took
	}
	b.ResetTimer()
	if replay {
		full := ready("replay", nil, "")
		b.ReportMetric(full.Seconds(), "s-replay")
	}
	var fastest, slowest time.Duration
	for i := range snapRuns {
		prof := ""
		if i == 0 {
			prof = profile
		}
		took := ready(fmt.Sprintf("snapshot-%d", i), store, prof)
		if i == 0 || took < fastest {
			fastest = took
		}
		slowest = max(slowest, took)
	}
	b.StopTimer()
	b.ReportMetric(fastest.Seconds(), "s-snapshot")
	if snapRuns > 1 {
		b.ReportMetric(slowest.Seconds(), "s-snapshot-slowest")
	}
}

// startProfile starts a CPU profile into prefix.cpu and writes the heap
// profile (allocations so far) to prefix.allocs.base; the function it
// returns stops the CPU profile and writes prefix.allocs. An empty prefix
// profiles nothing.
func startProfile(b *testing.B, prefix string) (stop func()) {
	if prefix == "" {
		return func() {}
	}
	writeHeap := func(path string) {
		runtime.GC()
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
	writeHeap(prefix + ".allocs.base")
	f, err := os.Create(prefix + ".cpu")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		writeHeap(prefix + ".allocs")
	}
}
