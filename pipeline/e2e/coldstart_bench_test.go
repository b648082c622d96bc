package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

const coldStartFeatures = `
kafka:
  feature_log_topic: features-{{ID}}
  dead_letter_topic: dlq-{{ID}}
  lookup_log_topic: lookups-{{ID}}
  registry_topic: registry-{{ID}}
  group: workers-{{ID}}
  partitions: 6
entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend_30d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
`

// BenchmarkColdStart measures how long a new lookup replica takes to become
// ready for COLDSTART_ENTITIES entities (default 1,000,000; 3 events each,
// 2 features): replaying the whole feature log, versus loading the newest
// snapshot and replaying only the log after it.
func BenchmarkColdStart(b *testing.B) {
	entities := 1_000_000
	if s := os.Getenv("COLDSTART_ENTITIES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		entities = n
	}
	k := startKafka(b)
	cfg := writeConfig(b, coldStartFeatures)
	ctx := context.Background()
	cl := newClient(b, k.Brokers)
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		b.Fatal(err)
	}
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	now := time.Now()
	batch := make([]*kgo.Record, 0, 5000)
	for i := 0; i < entities*3; i++ {
		r, err := enc.Record(map[string]any{"user_id": fmt.Sprintf("user-%07d", i%entities), "merchant_id": "m",
			"amount": float64(rng.IntN(10000)) / 100, "currency": "EUR", "ts": now.Add(-time.Duration(rng.Int64N(int64(10 * 24 * time.Hour)))).UnixMilli()})
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	backend, err := snapshot.NewDirBackend(filepath.Join(dir, "snapshots"))
	if err != nil {
		b.Fatal(err)
	}
	store := snapshot.NewStore(backend, 5)
	w := snapshottingWorker(b, k.Brokers, cfg, filepath.Join(dir, "worker"), store)
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	for testutil.ToFloat64(in) < float64(entities*3) {
		time.Sleep(50 * time.Millisecond)
	}
	m := takeSnapshot(b, w)
	b.Logf("snapshot %s of %d entities written", m.ID, entities)

	ready := func(name string, snaps *snapshot.Store) time.Duration {
		st, err := state.Open(filepath.Join(dir, name), state.Options{NoSync: true})
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
		start := time.Now()
		go func() { done <- svc.Run(cctx) }()
		for !svc.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: ready after %s, %v feature-log records applied", name, took.Round(time.Millisecond), testutil.ToFloat64(svc.Metrics().LogRecords))
		return took
	}
	b.ResetTimer()
	full := ready("replay", nil)
	snap := ready("snapshot", store)
	b.StopTimer()
	b.ReportMetric(full.Seconds(), "s-replay")
	b.ReportMetric(snap.Seconds(), "s-snapshot")
}
