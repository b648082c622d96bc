package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/monitor"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// BenchmarkIngest measures end-to-end ingest: events already on the broker
// (the embedded one unless KAFKA_BROKERS is set) are consumed by one worker
// that decodes, validates, applies them to the tiles of all the transaction
// features of featureFile (15 since the operators of issue 12), commits state+offsets to Pebble (fsync per batch) and publishes
// the tiles to the feature log. Reported: events/s from worker start to the
// last event committed. INGEST_EVENTS overrides the event count (default
// 1,000,000). INGEST_TIMES picks the event times: "live" (default: within
// the last minute, 5% late by up to 7 days, like a live stream) or "uniform"
// (uniform over 30 days, like replaying history: almost every event touches
// a different tile, so the feature log gets ~7 records per event).
// INGEST_STATS is the worker's statistics sample (monitor.Live, as
// `worker --stats-sample`): "0" or unset for none, "1" for every published
// value; make bench-ingest runs both.
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
	var stats *monitor.Live
	if s := os.Getenv("INGEST_STATS"); s != "" && s != "0" {
		sample, err := strconv.ParseFloat(s, 64)
		if err != nil {
			b.Fatalf("INGEST_STATS=%s: %v", s, err)
		}
		if stats, err = monitor.NewLive(nil, monitor.LiveOptions{Sample: sample}); err != nil {
			b.Fatal(err)
		}
	}
	w, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: st, Stats: stats})
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	cpu0 := processCPU(b)
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
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(elapsed.Seconds(), "s/total")
	// CPU time (user + system) of the whole process (worker and embedded
	// broker) while ingesting: unlike events/s, barely moved by other jobs
	// sharing the cores.
	b.ReportMetric(cpu.Seconds()*1e6/float64(total), "cpu-µs/event")
	b.Logf("%d events for %d users through one worker in %s, %s CPU (statistics sample %q)", total, users, elapsed.Round(time.Millisecond),
		cpu.Round(time.Millisecond), os.Getenv("INGEST_STATS"))
}

// processCPU is the user plus system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
