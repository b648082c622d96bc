package backfill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/produce"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchFeatures are the 8 features BenchmarkBackfill computes: the
// aggregations deploy/bench/backfill_duckdb.py computes exactly in SQL
// (count, sum, avg, min, max, last; sliding, hopping and lifetime windows,
// a default, two sources). The test feature file has more (variance, the
// sketches), which the DuckDB comparison cannot check value for value.
var benchFeatures = []string{"txn_avg_30d", "txn_sum_1d", "txn_count_7d", "txn_min_7d", "txn_max_30d", "txn_last", "txn_count_life", "login_count_1h"}

// BenchmarkBackfill replays BACKFILL_BENCH_EVENTS events (default 1,000,000)
// of BACKFILL_BENCH_KEYS users (default 10,000) over 60 days against
// BACKFILL_BENCH_ROWS spine rows (default 100,000) and benchFeatures, on
// kfake (or KAFKA_BROKERS), and reports events/s and rows/s of the whole job (listing offsets, replay, sweep, Parquet output).
//
// With BACKFILL_BENCH_DIR set it keeps spine.csv, train.parquet and its
// manifest there, plus events.parquet (the replayed events, exported by a
// second, untimed run) and featurepipe.json (the timed run's seconds) for
// deploy/bench/backfill_duckdb.py; featurepipe.json has the run's CPU time
// too (cpu_seconds: user + system, the kfake broker's included when it runs
// in this process). BACKFILL_BENCH_CPUPROFILE and
// BACKFILL_BENCH_MEMPROFILE name files for a CPU and an allocation profile of
// the timed runs only (go test's -cpuprofile would include producing the
// events). With BACKFILL_BENCH_SHARDS=N (N > 1) it
// then times the same backfill as N shards run at once (--shard i/N) and
// reports the wall time (sharded-s) and each shard's. The big benchmark
// (deploy/bench/backfill.sh runs it with DuckDB beside it):
//
//	BACKFILL_BENCH_EVENTS=10000000 BACKFILL_BENCH_ROWS=1000000 BACKFILL_BENCH_KEYS=100000 \
//	BACKFILL_BENCH_DIR=/tmp/bf go test -run '^$' -bench BenchmarkBackfill -benchtime 1x -timeout 1h ./pipeline/backfill
func BenchmarkBackfill(b *testing.B) {
	nEvents := envInt("BACKFILL_BENCH_EVENTS", 1_000_000)
	nRows := envInt("BACKFILL_BENCH_ROWS", 100_000)
	nKeys := envInt("BACKFILL_BENCH_KEYS", 10_000)
	dir := os.Getenv("BACKFILL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	brokers, cfg, cl := setup(b, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchMaxBytes(900<<10))
	rng := rand.New(rand.NewPCG(42, 42))
	now := time.Now().Add(-time.Minute).UnixMilli()
	span := 60 * aggregations.Day
	encs := map[string]*produce.Encoder{}
	var err error
	for _, s := range []string{"transactions", "logins"} {
		if encs[s], err = produce.NewEncoder(cfg, s); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var perr error
	errc := make(chan error, 1)
	for i := 0; i < nEvents; i++ {
		src := "transactions"
		if i%5 == 0 {
			src = "logins"
		}
		key := fmt.Sprintf("user-%d", rng.IntN(nKeys))
		ts := now - rng.Int64N(span)
		var amount float64
		if src == "transactions" {
			amount = randomAmount(rng)
		}
		r, err := encs[src].Record(testkit.Event(src, key, ts, amount))
		if err != nil {
			b.Fatal(err)
		}
		r.Timestamp = time.UnixMilli(min(ts+rng.Int64N(aggregations.Hour), now))
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case perr = <-errc:
		b.Fatal(perr)
	default:
	}
	b.Logf("produced %d events in %s", nEvents, time.Since(start).Round(time.Millisecond))

	rows := make([]spineRow, nRows)
	for i := range rows {
		// Spine times in the last 20 days: the 30d windows need 50 days of the 60.
		rows[i] = spineRow{key: fmt.Sprintf("user-%d", rng.IntN(nKeys)), T: now - rng.Int64N(20*aggregations.Day), label: i % 2}
	}
	spine := filepath.Join(dir, "spine.csv")
	writeSpine(b, spine, rows)
	out := filepath.Join(dir, "train.parquet")
	var m *Manifest
	stopProfiles := startProfiles(b)
	cpu0 := processCPU()
	b.ResetTimer()
	for b.Loop() {
		if m, err = Run(ctx, Options{Brokers: brokers, Config: cfg, Spine: spine, Out: out, Features: benchFeatures}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpuSec := (processCPU() - cpu0).Seconds() / float64(b.N)
	stopProfiles()
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(m.Events.Records)/sec, "events/s")
	b.ReportMetric(float64(m.Output.Rows)/sec, "rows/s")
	b.ReportMetric(cpuSec, "cpu-s")
	b.Logf("%d records replayed, %d rows x %d features in %.2fs per run (%.2fs of CPU, the in-process kfake broker's included)",
		m.Events.Records, m.Output.Rows, len(m.Features), sec, cpuSec)
	if n := envInt("BACKFILL_BENCH_SHARDS", 1); n > 1 {
		// The same backfill as n shards run at once in this process (on one
		// machine they share its cores; on n machines each has its own).
		began := time.Now()
		mans := make([]*Manifest, n)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				var err error
				mans[i], err = Run(ctx, Options{Brokers: brokers, Config: cfg, Spine: spine, Out: filepath.Join(dir, "train-sharded"),
					Features: benchFeatures, Shard: Shard{Index: i, Count: n}})
				errs <- err
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		wall := time.Since(began).Seconds()
		for _, sm := range mans {
			for _, sh := range sm.Shards {
				b.Logf("shard %d/%d: %d rows in %.2fs", sh.Index, n, sh.Rows, float64(sh.DurationMS)/1000)
			}
		}
		b.ReportMetric(wall, "sharded-s")
		b.Logf("%d shards at once: %.2fs wall (one process: %.2fs)", n, wall, sec)
	}
	if os.Getenv("BACKFILL_BENCH_DIR") != "" {
		// The events for other engines, exported by a second, untimed run
		// (writing 10M events to Parquet is not part of a backfill).
		o := Options{Brokers: brokers, Config: cfg, Spine: spine, Out: filepath.Join(dir, "train-export.parquet"),
			Features: benchFeatures, ExportEvents: filepath.Join(dir, "events.parquet")}
		if _, err := Run(ctx, o); err != nil {
			b.Fatal(err)
		}
		timing := fmt.Sprintf(`{"seconds": %.3f, "cpu_seconds": %.3f, "events": %d, "rows": %d, "features": %d, "gomaxprocs": %d}`+"\n",
			sec, cpuSec, m.Events.Records, m.Output.Rows, len(m.Features), runtime.GOMAXPROCS(0))
		if err := os.WriteFile(filepath.Join(dir, "featurepipe.json"), []byte(timing), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// startProfiles starts the profiles BACKFILL_BENCH_CPUPROFILE and
// BACKFILL_BENCH_MEMPROFILE ask for (none when unset); stop ends them.
// The allocation profile samples one allocation per 4 KiB from its start
// (which costs time: read no figures from a run that takes it) and also holds
// the events' production before it: look at it with pprof -focus Run.
func startProfiles(b *testing.B) (stop func()) {
	cpu, mem := os.Getenv("BACKFILL_BENCH_CPUPROFILE"), os.Getenv("BACKFILL_BENCH_MEMPROFILE")
	var cf *os.File
	if cpu != "" {
		var err error
		if cf, err = os.Create(cpu); err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(cf); err != nil {
			b.Fatal(err)
		}
	}
	if mem != "" {
		runtime.MemProfileRate = 4096
	}
	return func() {
		if cf != nil {
			pprof.StopCPUProfile()
			if err := cf.Close(); err != nil {
				b.Fatal(err)
			}
		}
		if mem != "" {
			f, err := os.Create(mem)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// processCPU is the user and system CPU time the process has used: on a
// machine shared with other work it varies far less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
