package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// BenchmarkScaling measures issue 18's "cost that grows linearly": the same
// history per entity at several entity counts, so that time and memory per
// event can be compared between sizes within one run (ratios, not absolute
// figures, on a shared machine).
//
// Knobs: SCALING_ENTITIES, a comma-separated list of entity counts (default
// "50000,200000"), each measured on a fresh broker in that order;
// SCALING_EVENTS_PER_ENTITY (default 3) events per entity with event times
// uniform over the last SCALING_DAYS days (default 30), produced in event
// time order (a history as it happened); the 7 features of replayFeatures.
// SCALING_CACHE_MB sets both stores' block cache (state.Options.CacheBytes;
// default the store's). SCALING_CACHED=n bounds every per-entity cache to n
// entities: the worker's MaxCachedEntities, the replica's CacheEntries
// (default: theirs).
// SCALING_WORKER_CACHED=n bounds only the worker's MaxCachedEntities to n
// (it overrides SCALING_CACHED for the worker; the replica's cache keeps
// SCALING_CACHED or their defaults).
// SCALING_PROFILE=prefix writes CPU and heap profiles of each phase
// (prefix-<entities>-worker.cpu, ….heap, -replica.cpu, ….heap).
//
// Per size, two phases measured apart:
//   - worker: one worker (fsync per batch) on an empty store, from start
//     until it has applied every event and stopped cleanly (a clean stop
//     publishes every pending tile): worker events/s and feature-log
//     records per event.
//   - replica: a lookup replica on an empty store started afterwards, until
//     it is ready (it has applied the whole feature log): the catch-up time
//     and time per event. Then a full compaction of its store (what its
//     catch-up left to Pebble's background work, e.g. merging the view's
//     operands into values, done at once): its time, and the CPU per event
//     with it ("settled"). Then, untimed, the lifetime counts of all
//     entities must add up to the events produced.
//
// The CPU time of the whole process per event is reported too (broker
// included; less moved than wall time by other jobs sharing the cores).
// For each phase the peak RSS of the whole process and the peak live Go
// heap (sampled every 20 ms) are reported, less their values just before
// the phase: the process also holds the embedded broker (unless
// KAFKA_BROKERS is set), whose topics grow with the events. Pebble's
// metrics at the end of each phase (compactions, read amplification, block
// cache and bloom filter hits) are logged.
func BenchmarkScaling(b *testing.B) {
	sizes := scalingSizes(b)
	perEntity := envInt(b, "SCALING_EVENTS_PER_ENTITY", 3)
	days := envInt(b, "SCALING_DAYS", 30)
	profile := os.Getenv("SCALING_PROFILE")
	cacheBytes := int64(envInt(b, "SCALING_CACHE_MB", 1)) << 20
	if os.Getenv("SCALING_CACHE_MB") == "" {
		cacheBytes = 0
	}
	cached := 0
	if os.Getenv("SCALING_CACHED") != "" {
		cached = envInt(b, "SCALING_CACHED", 1)
	}
	workerCached := cached
	if os.Getenv("SCALING_WORKER_CACHED") != "" {
		workerCached = envInt(b, "SCALING_WORKER_CACHED", 1)
	}
	b.Logf("worker MaxCachedEntities %d, replica CacheEntries %d (0: the default)", workerCached, cached)
	type result struct {
		entities, events             int
		workerRate, records          float64
		workerRSS, workerHeap        uint64
		replica                      time.Duration
		replicaRSS, replicaHeap      uint64
		workerPerEvent, replicaPerEv time.Duration
		workerCPU, replicaCPU        time.Duration // per event, whole process
		// replicaSettledCPU adds a full compaction of the replica's
		// store after it is ready (per event): work its catch-up left to
		// Pebble (merging the view's operands) counts too.
		replicaSettledCPU time.Duration
		replicaSettle     time.Duration
	}
	var results []result
	for _, n := range sizes {
		total := n * perEntity
		k, cfg, cl := setup(b, replayFeatures(b))
		rng := rand.New(rand.NewPCG(18, uint64(n)))
		now := time.Now()
		span := int64(time.Duration(days) * 24 * time.Hour)
		type ev struct {
			user int
			ts   int64
		}
		evs := make([]ev, 0, total)
		for u := range n {
			for range perEntity {
				evs = append(evs, ev{u, now.Add(-time.Duration(rng.Int64N(span))).UnixMilli()})
			}
		}
		slices.SortFunc(evs, func(a, c ev) int { return int(a.ts - c.ts) })
		produceTransactions(b, cl, cfg, total, func(i int) (string, int64) {
			return scalingKey(evs[i].user), evs[i].ts
		})
		evs = nil
		cl.Close()
		b.ResetTimer()

		var r result
		r.entities, r.events = n, total
		dir := b.TempDir()

		// Worker.
		cpu0 := processCPU(b)
		var wtook time.Duration
		var published float64
		r.workerRSS, r.workerHeap = scalingPeak(func() {
			stop := scalingProfile(b, profile, n, "worker")
			defer stop()
			st, err := state.Open(filepath.Join(dir, "worker"), state.Options{CacheBytes: cacheBytes})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			w, err := worker.New(worker.Options{Brokers: k.Brokers, Config: cfg, Store: st, MaxCachedEntities: workerCached})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- w.Run(ctx) }()
			in := w.Metrics().EventsIn.WithLabelValues("transactions")
			for testutil.ToFloat64(in) < float64(total) {
				select {
				case err := <-done:
					b.Fatalf("worker stopped after %v of %d events: %v", testutil.ToFloat64(in), total, err)
				case <-time.After(2 * time.Millisecond):
				}
				if time.Since(start) > replayTimeout {
					b.Fatalf("worker: %v of %d events after %s", testutil.ToFloat64(in), total, replayTimeout)
				}
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			wtook = time.Since(start)
			published = testutil.ToFloat64(w.Metrics().TilesPublished)
			b.Logf("%d entities, worker: %s", n, pebbleSummary(st))
		})
		r.workerRate = float64(total) / wtook.Seconds()
		r.records = published / float64(total)
		r.workerPerEvent = wtook / time.Duration(total)
		cpu1 := processCPU(b)
		r.workerCPU = (cpu1 - cpu0) / time.Duration(total)

		// Replica, started afterwards on an empty store.
		r.replicaRSS, r.replicaHeap = scalingPeak(func() {
			stop := scalingProfile(b, profile, n, "replica")
			st, err := lookup.OpenStore(filepath.Join(dir, "replica"), state.Options{NoSync: true, CacheBytes: cacheBytes})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			svc, err := lookup.New(lookup.Options{Brokers: k.Brokers, Config: cfg, Store: st, LookupLogSample: lookup.NoLookupLog,
				CacheEntries: cached})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- svc.Run(ctx) }()
			for !svc.Ready() {
				select {
				case err := <-done:
					b.Fatalf("the lookup service stopped: %v", err)
				case <-time.After(2 * time.Millisecond):
				}
				if time.Since(start) > replayTimeout {
					b.Fatalf("the replica is not ready after %s", replayTimeout)
				}
			}
			r.replica = time.Since(start)
			r.replicaCPU = (processCPU(b) - cpu1) / time.Duration(total)
			settle := time.Now()
			if err := st.DB().Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
				b.Fatal(err)
			}
			r.replicaSettle = time.Since(settle)
			r.replicaSettledCPU = (processCPU(b) - cpu1) / time.Duration(total)
			stop()
			applied := testutil.ToFloat64(svc.Metrics().LogRecords)
			if counted := scalingCounted(b, svc.Handler(), n); counted != total {
				b.Fatalf("%d entities: the replica counts %d events, %d were produced", n, counted, total)
			}
			b.Logf("%d entities, replica: %.0f feature-log records applied (%.0f published); %s", n, applied, published, pebbleSummary(st))
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
		r.replicaPerEv = r.replica / time.Duration(total)
		b.StopTimer()
		b.Logf("%d entities, %d events: worker %.0f events/s (%s/event, CPU %s/event), %.2f feature-log records/event, +%d MiB RSS, +%d MiB live heap; replica catch-up %s (%s/event, CPU %s/event; a full compaction afterwards %s, CPU with it %s/event), +%d MiB RSS, +%d MiB live heap",
			n, total, r.workerRate, r.workerPerEvent, r.workerCPU, r.records, r.workerRSS>>20, r.workerHeap>>20,
			r.replica.Round(time.Millisecond), r.replicaPerEv, r.replicaCPU, r.replicaSettle.Round(time.Millisecond), r.replicaSettledCPU, r.replicaRSS>>20, r.replicaHeap>>20)
		results = append(results, r)
	}
	for _, r := range results {
		suffix := fmt.Sprintf("@%dk", r.entities/1000)
		b.ReportMetric(r.workerRate, "worker-events/s"+suffix)
		b.ReportMetric(r.replica.Seconds(), "replica-s"+suffix)
		b.ReportMetric(r.records, "records/event"+suffix)
		b.ReportMetric(float64(r.workerRSS>>20), "worker-MiB"+suffix)
		b.ReportMetric(float64(r.replicaRSS>>20), "replica-MiB"+suffix)
	}
	if len(results) >= 2 {
		first, last := results[0], results[len(results)-1]
		b.ReportMetric(float64(last.workerPerEvent)/float64(first.workerPerEvent), "worker-time/event-ratio")
		b.ReportMetric(float64(last.replicaPerEv)/float64(first.replicaPerEv), "replica-time/event-ratio")
		b.ReportMetric(float64(last.workerCPU)/float64(first.workerCPU), "worker-cpu/event-ratio")
		b.ReportMetric(float64(last.replicaCPU)/float64(first.replicaCPU), "replica-cpu/event-ratio")
		b.ReportMetric(float64(last.replicaSettledCPU)/float64(first.replicaSettledCPU), "replica-settled-cpu/event-ratio")
	}
}

// scalingSizes is SCALING_ENTITIES, else 50,000 and 200,000.
func scalingSizes(b *testing.B) []int {
	s := os.Getenv("SCALING_ENTITIES")
	if s == "" {
		return []int{50_000, 200_000}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("SCALING_ENTITIES=%q: want positive integers separated by commas", s)
		}
		out = append(out, n)
	}
	return out
}

func scalingKey(i int) string { return fmt.Sprintf("user-%07d", i) }

// scalingCounted asks h for txn_count_life of the first n entities and
// returns the sum.
func scalingCounted(b *testing.B, h http.Handler, n int) int {
	sum := 0
	for from := 0; from < n; from += 1000 {
		keys := make([]string, 0, 1000)
		for i := from; i < min(from+1000, n); i++ {
			keys = append(keys, scalingKey(i))
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

// scalingPeak runs f and returns the peak RSS of the process and the peak
// live Go heap while it ran, less their values just before (after a GC).
func scalingPeak(f func()) (rss, heap uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	rss0, heap0 := processRSS(), liveHeap()
	var peakRSS, peakHeap uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peakRSS, peakHeap = max(peakRSS, processRSS()), max(peakHeap, liveHeap())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peakRSS - min(peakRSS, rss0), peakHeap - min(peakHeap, heap0)
}

// processRSS is VmRSS of /proc/self/status in bytes (0 where there is none).
func processRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// liveHeap is the Go heap marked live by the last GC.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// scalingProfile starts a CPU profile of one phase and returns the function
// that stops it and writes the heap profile (in use and allocated). An
// empty prefix profiles nothing.
func scalingProfile(b *testing.B, prefix string, n int, phase string) (stop func()) {
	if prefix == "" {
		return func() {}
	}
	base := fmt.Sprintf("%s-%d-%s", prefix, n, phase)
	f, err := os.Create(base + ".cpu")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
			h, err := os.Create(base + ".heap")
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			if err := pprof.Lookup("heap").WriteTo(h, 0); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// pebbleSummary is the part of Pebble's metrics that explains point-read
// cost: compactions, read amplification, files per level, block cache and
// bloom filter effectiveness.
func pebbleSummary(st *state.Store) string {
	m := st.DB().Metrics()
	var files []string
	var compacted uint64
	for i, l := range m.Levels {
		compacted += l.TableBytesCompacted
		if l.TablesCount > 0 {
			files = append(files, fmt.Sprintf("L%d:%d", i, l.TablesCount))
		}
	}
	return fmt.Sprintf("pebble: %d compactions (%d MiB written), %d flushes, read-amp %d, files %s, %d MiB on disk, block cache %d MiB hits %d misses %d, filter hits %d misses %d, memtables %d MiB",
		m.Compact.Count, compacted>>20, m.Flush.Count, m.ReadAmp(), strings.Join(files, " "), m.DiskSpaceUsage()>>20,
		m.BlockCache.Size>>20, m.BlockCache.Hits, m.BlockCache.Misses, m.Filter.Hits, m.Filter.Misses, m.MemTable.Size>>20)
}
