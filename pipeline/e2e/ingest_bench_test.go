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
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// BenchmarkIngest measures end-to-end ingest: events already on the broker
// (the embedded one unless KAFKA_BROKERS is set) are consumed by one worker
// that decodes, validates, applies them to the tiles of all 7 transaction
// features, commits state+offsets to Pebble (fsync per batch) and publishes
// the tiles to the feature log. Reported: events/s from worker start to the
// last event committed. INGEST_EVENTS overrides the event count (default
// 1,000,000). INGEST_TIMES picks the event times: "live" (default: within
// the last minute, 5% late by up to 7 days, like a live stream) or "uniform"
// (uniform over 30 days, like replaying history: almost every event touches
// a different tile, so the feature log gets ~7 records per event).
func BenchmarkIngest(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("INGEST_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		total = n
	}
	k := startKafka(b)
	cfg := writeConfig(b, featureFile)
	ctx := context.Background()
	cl := newClient(b, k.Brokers)
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		b.Fatal(err)
	}
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	now := time.Now()
	uniform := os.Getenv("INGEST_TIMES") == "uniform"
	eventTime := func() int64 {
		switch {
		case uniform:
			return now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))).UnixMilli()
		case rng.IntN(20) == 0:
			return now.Add(-time.Duration(rng.Int64N(int64(7 * 24 * time.Hour)))).UnixMilli()
		default:
			return now.Add(-time.Duration(rng.Int64N(int64(time.Minute)))).UnixMilli()
		}
	}
	const users = 10_000
	batch := make([]*kgo.Record, 0, 10_000)
	for i := 0; i < total; i++ {
		r, err := enc.Record(map[string]any{"user_id": fmt.Sprintf("user-%05d", rng.IntN(users)), "merchant_id": "m",
			"amount": float64(rng.IntN(100000)) / 100, "currency": "EUR",
			"ts": eventTime()})
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) || i == total-1 {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	st, err := state.Open(filepath.Join(b.TempDir(), "worker"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- w.Run(wctx) }()
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	for testutil.ToFloat64(in) < float64(total) {
		time.Sleep(5 * time.Millisecond)
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("only %v of %d events after 10 minutes", testutil.ToFloat64(in), total)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(elapsed.Seconds(), "s/total")
	b.Logf("%d events for %d users through one worker in %s", total, users, elapsed.Round(time.Millisecond))
}
