package e2e

import (
	"bytes"
	"context"
	ebinary "encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// replayFeatures is the feature file of issue 18's history replay,
// schemas/history.yaml (7 features over one source with hops of 5
// minutes, 1 hour, 1 day and a lifetime window), with this run's topics.
func replayFeatures(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "schemas", "history.yaml"))
	if err != nil {
		tb.Fatalf("the history feature file: %v", err)
	}
	text := string(data)
	i := strings.Index(text, "\nentities:")
	if i < 0 || !strings.Contains(text, "topic: transactions,") {
		tb.Fatalf("schemas/history.yaml: no entities section or no topic: transactions")
	}
	return testkit.KafkaSection(4) + strings.Replace(text[i+1:], "topic: transactions,", "topic: transactions-{{ID}},", 1)
}

// replayTimeout bounds every wait of the replay benchmarks, so that a
// broken pipeline fails them instead of hanging them.
const replayTimeout = 10 * time.Minute

// BenchmarkHistoryReplay measures issue 18's history replay: REPLAY_EVENTS
// (default 300,000) transactions of REPLAY_USERS (default 5,000) users with
// event times uniform over the last 40 days, already on the broker (the
// embedded one unless KAFKA_BROKERS is set), 7 features (replayFeatures).
//
//   - featurepipe: one worker (fsync per batch) and one lookup replica are
//     started together on empty stores; the time runs until the replica
//     serves all events (the lifetime counts of all users, looked up over
//     the replica's HTTP handler, add up to REPLAY_EVENTS).
//   - bare: the reference of the issue, a bare consumer of the same topic
//     (bareConsume: franz-go, goavro's generic decode, a per-key map and
//     one fsynced Pebble batch per poll).
//
// Each of REPLAY_ROUNDS rounds (default 1) runs on a fresh broker: bare,
// then featurepipe. Reported: both rates (median over the rounds) and
// ratio, the median of the rounds' featurepipe/bare ratios (issue goal
// ≥ 0.5), and the CPU time of the whole process (broker included) per
// event of each, with cpu-ratio = bare/featurepipe: less moved than the
// rates by other jobs sharing the cores. With REPLAY_SPLIT=1 the featurepipe half runs as two phases
// measured apart: the worker alone until every event is applied and
// published (worker-events/s), then a replica started afterwards until it
// serves them all (replica-records/s, over the feature-log records it
// applied). Profiles (-cpuprofile, -memprofile) carry the pprof label
// phase=bare|worker|replica|together, so that `go tool pprof
// -tagfocus phase=worker` shows one half. REPLAY_PUBLISH_INTERVAL sets
// the worker's PublishInterval (default: the worker's).
func BenchmarkHistoryReplay(b *testing.B) {
	total := envInt(b, "REPLAY_EVENTS", 300_000)
	users := envInt(b, "REPLAY_USERS", 5_000)
	rounds := envInt(b, "REPLAY_ROUNDS", 1)
	split := envInt(b, "REPLAY_SPLIT", 2) == 1
	var bares, fps, ratios, workers, replicas, bareCPUs, fpCPUs, cpuRatios []float64
	for round := range rounds {
		k, cfg, cl := setup(b, replayFeatures(b))
		rng := rand.New(rand.NewPCG(18, uint64(round)))
		now := time.Now()
		produceTransactions(b, cl, cfg, total, func(int) (string, int64) {
			ago := time.Duration(rng.Int64N(int64(40 * 24 * time.Hour)))
			return fmt.Sprintf("user-%05d", rng.IntN(users)), now.Add(-ago).UnixMilli()
		})
		cl.Close()
		b.ResetTimer()
		var bare float64
		cpu0 := processCPU(b)
		labeled("bare", func() { bare = float64(total) / bareConsume(b, k.Brokers, cfg, total).Seconds() })
		cpu1 := processCPU(b)
		var fp float64
		if split {
			var w, r time.Duration
			var records float64
			labeled("worker", func() { w = replayWorker(b, k.Brokers, cfg, total) })
			labeled("replica", func() { r, records = replayReplica(b, k.Brokers, cfg, total, nil, nil) })
			fp = float64(total) / (w + r).Seconds()
			workers = append(workers, float64(total)/w.Seconds())
			replicas = append(replicas, records/r.Seconds())
			b.Logf("round %d: worker alone %s, replica afterwards %s (%.0f feature-log records)", round+1, w.Round(time.Millisecond), r.Round(time.Millisecond), records)
		} else {
			var took time.Duration
			labeled("together", func() { took = replayTogether(b, k.Brokers, cfg, total) })
			fp = float64(total) / took.Seconds()
		}
		cpu2 := processCPU(b)
		b.StopTimer()
		bareCPU := float64(cpu1-cpu0) / float64(time.Microsecond) / float64(total)
		fpCPU := float64(cpu2-cpu1) / float64(time.Microsecond) / float64(total)
		bares, fps, ratios = append(bares, bare), append(fps, fp), append(ratios, fp/bare)
		bareCPUs, fpCPUs, cpuRatios = append(bareCPUs, bareCPU), append(fpCPUs, fpCPU), append(cpuRatios, bareCPU/fpCPU)
		b.Logf("round %d: bare %.0f events/s, featurepipe %.0f events/s, ratio %.3f; CPU per event (whole process, broker included) bare %.1f µs, featurepipe %.1f µs, ratio %.3f (%d events, %d users, 40 days)",
			round+1, bare, fp, fp/bare, bareCPU, fpCPU, bareCPU/fpCPU, total, users)
	}
	b.ReportMetric(median(bares), "bare-events/s")
	b.ReportMetric(median(fps), "events/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(bareCPUs), "bare-cpu-µs/event")
	b.ReportMetric(median(fpCPUs), "cpu-µs/event")
	b.ReportMetric(median(cpuRatios), "cpu-ratio")
	if split {
		b.ReportMetric(median(workers), "worker-events/s")
		b.ReportMetric(median(replicas), "replica-records/s")
	}
}

// replayInterval is REPLAY_PUBLISH_INTERVAL (a duration), else 0: the
// worker's default.
func replayInterval(b *testing.B) time.Duration {
	s := os.Getenv("REPLAY_PUBLISH_INTERVAL")
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("REPLAY_PUBLISH_INTERVAL=%s: %v", s, err)
	}
	return d
}

// labeled runs f with the pprof label phase=name (inherited by the
// goroutines f starts).
func labeled(name string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("phase", name), func(context.Context) { f() })
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}

// replayTogether starts a worker and a lookup replica at the same time on
// empty stores and returns the time until the replica serves all total
// events.
func replayTogether(b *testing.B, brokers []string, cfg *config.File, total int) time.Duration {
	dir := b.TempDir()
	st, err := state.Open(filepath.Join(dir, "worker"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := worker.New(worker.Options{Brokers: brokers, Config: cfg, Store: st, PublishInterval: replayInterval(b)})
	if err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	start := time.Now()
	go func() { wdone <- w.Run(wctx) }()
	// Checked only once the replica has applied every record published
	// so far after the worker applied all events: cheap, and the checks'
	// lookups do not compete with the replay.
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	worth := func(svc *lookup.Service) bool {
		return testutil.ToFloat64(in) >= float64(total) &&
			testutil.ToFloat64(svc.Metrics().LogRecords) >= testutil.ToFloat64(w.Metrics().TilesPublished)
	}
	_, _ = replayReplica(b, brokers, cfg, total, &start, worth)
	took := time.Since(start)
	cancel()
	if err := <-wdone; err != nil {
		b.Fatal(err)
	}
	return took
}

// replayWorker runs a worker on an empty store until it has applied all
// total events, then stops it (a clean stop publishes every pending tile
// and waits for the acknowledgements) and returns the time until it has
// stopped.
func replayWorker(b *testing.B, brokers []string, cfg *config.File, total int) time.Duration {
	st, err := state.Open(filepath.Join(b.TempDir(), "worker"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w, err := worker.New(worker.Options{Brokers: brokers, Config: cfg, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	in := w.Metrics().EventsIn.WithLabelValues("transactions")
	for testutil.ToFloat64(in) < float64(total) {
		if time.Since(start) > replayTimeout {
			b.Fatalf("worker: %v of %d events after %s", testutil.ToFloat64(in), total, replayTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.Logf("worker: %v feature-log records published", testutil.ToFloat64(w.Metrics().TilesPublished))
	return took
}

// replayReplica starts a lookup replica on an empty store and waits until
// it serves all total events: the lifetime counts of all users add up to
// total (checked when worth, if not nil, says it is worth checking). It returns the time from start (now when nil) and the feature-log
// records the replica applied.
func replayReplica(b *testing.B, brokers []string, cfg *config.File, total int, start *time.Time, worth func(*lookup.Service) bool) (time.Duration, float64) {
	st, err := lookup.OpenStore(filepath.Join(b.TempDir(), "replica"), state.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	svc, err := lookup.New(lookup.Options{Brokers: brokers, Config: cfg, Store: st, LookupLogSample: lookup.NoLookupLog})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if start == nil {
		start = &t0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	h := svc.Handler()
	var polls int
	for {
		if svc.Ready() && (worth == nil || worth(svc)) {
			polls++
			if n := replayCounted(b, h); n == total {
				break
			} else if n > total {
				b.Fatalf("the replica counts %d events, %d were produced", n, total)
			}
		}
		select {
		case err := <-done:
			b.Fatalf("the lookup service stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(*start) > replayTimeout {
			b.Fatalf("the replica does not serve all %d events after %s", total, replayTimeout)
		}
	}
	took := time.Since(*start)
	records := testutil.ToFloat64(svc.Metrics().LogRecords)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.Logf("replica: %d checks of all users", polls)
	return took, records
}

// replayCounted asks h for txn_count_life of every user that has events
// (REPLAY_USERS of them) and returns the sum.
func replayCounted(b *testing.B, h http.Handler) int {
	users := envInt(b, "REPLAY_USERS", 5_000)
	sum := 0
	for from := 0; from < users; from += 1000 {
		keys := make([]string, 0, 1000)
		for i := from; i < min(from+1000, users); i++ {
			keys = append(keys, fmt.Sprintf("user-%05d", i))
		}
		body, _ := json.Marshal(lookup.LookupRequest{Entity: "user", Keys: keys, Features: []string{"txn_count_life"}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/lookup", bytes.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("lookup: HTTP %d: %s", rec.Code, rec.Body)
		}
		var resp lookup.LookupResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Results {
			if v := r.Features["txn_count_life"].Value; v != nil {
				sum += int(*v)
			}
		}
	}
	return sum
}

// bareConsume is issue 18's bare reference: a consumer of the transactions
// topic from its start (franz-go, read-committed like the worker) that
// decodes every record with goavro's generic decode, keeps a count and a
// sum per key in a map, and writes the keys a poll changed with the
// partitions' next offsets in one fsynced Pebble batch per poll. It returns
// the time until all total records are committed.
func bareConsume(b *testing.B, brokers []string, cfg *config.File, total int) time.Duration {
	src, ok := cfg.Source("transactions")
	if !ok {
		b.Fatal("no transactions source")
	}
	codec := src.Schema.Codec
	st, err := state.Open(filepath.Join(b.TempDir(), "bare"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	cl, err := kafka.NewClient(kafka.Conn{Brokers: brokers}, "replay-bare", nil,
		kgo.ConsumeTopics(src.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	type agg struct {
		count int64
		sum   float64
		dirty bool
	}
	m := make(map[string]*agg)
	var dirty []string
	var val []byte
	ctx := context.Background()
	n := 0
	for n < total {
		fetches := cl.PollRecords(ctx, 20000)
		if err := fetches.Err0(); err != nil {
			b.Fatal(err)
		}
		batch := st.NewBatch()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			for _, r := range fp.Records {
				// Single-object encoding: 2 marker bytes, 8 of fingerprint.
				native, _, err := codec.NativeFromBinary(r.Value[10:])
				if err != nil {
					b.Fatal(err)
				}
				rec := native.(map[string]any)
				key := rec["user_id"].(string)
				a := m[key]
				if a == nil {
					a = &agg{}
					m[key] = a
				}
				a.count++
				a.sum += rec["amount"].(float64)
				if !a.dirty {
					a.dirty = true
					dirty = append(dirty, key)
				}
			}
			if len(fp.Records) > 0 {
				next := fp.Records[len(fp.Records)-1].Offset + 1
				_ = batch.Set([]byte(fmt.Sprintf("offset/%d", fp.Partition)), ebinary.BigEndian.AppendUint64(nil, uint64(next)), nil)
				n += len(fp.Records)
			}
		})
		for _, key := range dirty {
			a := m[key]
			val = ebinary.BigEndian.AppendUint64(val[:0], uint64(a.count))
			val = ebinary.BigEndian.AppendUint64(val, math.Float64bits(a.sum))
			_ = batch.Set([]byte(key), val, nil)
			a.dirty = false
		}
		dirty = dirty[:0]
		if err := st.Commit(batch); err != nil {
			b.Fatal(err)
		}
		if time.Since(start) > replayTimeout {
			b.Fatalf("bare consumer: %d of %d records after %s", n, total, replayTimeout)
		}
	}
	return time.Since(start)
}
