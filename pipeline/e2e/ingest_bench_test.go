package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/state"
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
	total := envInt(b, "INGEST_EVENTS", 1_000_000)
	k, cfg, cl := setup(b, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 1))
	now := time.Now()
	uniform := os.Getenv("INGEST_TIMES") == "uniform"
	const users = 10_000
	produceTransactions(b, cl, cfg, total, func(int) (string, int64) {
		ago := time.Duration(rng.Int64N(int64(time.Minute)))
		switch {
		case uniform:
			ago = time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))
		case rng.IntN(20) == 0:
			ago = time.Duration(rng.Int64N(int64(7 * 24 * time.Hour)))
		}
		return fmt.Sprintf("user-%05d", rng.IntN(users)), now.Add(-ago).UnixMilli()
	})
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
