package e2e

import (
	"context"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
	"github.com/featurepipe/featurepipe/internal/snapshot"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/skew"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// crc32Partitioner partitions a keyed record as librdkafka's default
// partitioner (consistent_random: CRC32 of the key modulo the partition
// count, for non-empty keys) does: the default of the Python, C, .NET and
// confluent Go clients.
func crc32Partitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int { return int(crc32.ChecksumIEEE(r.Key) % uint32(n)) }
	})
}

// mixedProducers are two producers writing the same keys to the same
// topics: franz-go's default partitioner (Kafka's murmur2) and a CRC32
// one, so that most entities have events in two partitions.
type mixedProducers struct {
	t        testing.TB
	cfg      *config.File
	murmur   *kgo.Client
	crc      *kgo.Client
	p        *produced
	mu       sync.Mutex
	offCanon int // records the CRC32 producer put outside their murmur2 partition
}

func newMixedProducers(t testing.TB, k *kafkaCluster, cfg *config.File, murmur *kgo.Client) *mixedProducers {
	t.Helper()
	crc, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ClientID("featurepipe-test-crc32"),
		kgo.RecordPartitioner(crc32Partitioner()), kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(crc.Close)
	return &mixedProducers{t: t, cfg: cfg, murmur: murmur, crc: crc, p: newProduced()}
}

// produce sends each event through one of the two producers (chosen by
// rng) and records it with its tie-breaking sequence: the source partition
// and offset, as aggregations.Seq orders events across partitions.
func (m *mixedProducers) produce(ctx context.Context, rng *rand.Rand, evs []event) {
	m.t.Helper()
	encs := map[string]*produce.Encoder{}
	var viaMurmur, viaCRC []*kgo.Record
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		enc := encs[e.source]
		if enc == nil {
			var err error
			if enc, err = produce.NewEncoder(m.cfg, e.source); err != nil {
				m.t.Fatal(err)
			}
			encs[e.source] = enc
		}
		r, err := enc.Record(testkit.Event(e.source, e.key, e.ts, e.amount))
		if err != nil {
			m.t.Fatal(err)
		}
		recs[i] = r
		if rng.IntN(2) == 0 {
			viaMurmur = append(viaMurmur, r)
		} else {
			viaCRC = append(viaCRC, r)
		}
	}
	var wg sync.WaitGroup
	var errs [2]error
	for i, send := range []struct {
		cl   *kgo.Client
		recs []*kgo.Record
	}{{m.murmur, viaMurmur}, {m.crc, viaCRC}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = send.cl.ProduceSync(ctx, send.recs...).FirstErr()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			m.t.Fatalf("produce: %v", err)
		}
	}
	canon := kgo.StickyKeyPartitioner(nil).ForTopic("")
	m.mu.Lock()
	for _, r := range viaCRC {
		if int32(canon.Partition(r, int(m.cfg.Kafka.Partitions))) != r.Partition {
			m.offCanon++
		}
	}
	m.mu.Unlock()
	p := m.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range recs {
		e := evs[i]
		p.addLocked(m.cfg, e.source, e.key, aggregations.Event{TS: e.ts, Seq: aggregations.Seq(r.Partition, r.Offset), Value: e.amount})
	}
}

// withTies returns evs plus, for some of them, a second event of the same
// key and event time with another amount: `last` must then pick the same
// one of the two online and in backfill, across partitions too.
func withTies(rng *rand.Rand, evs []event) []event {
	out := evs
	for _, e := range evs {
		if rng.IntN(10) == 0 {
			e.amount = float64(rng.IntN(1_000_000)) / 100
			out = append(out, e)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// spreadKeys counts the keys whose events of source src are in more than
// one partition (so that the test does test the merge).
func spreadKeys(p *produced, src string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, evs := range p.events[src] {
		parts := map[int64]bool{}
		for _, e := range evs {
			parts[e.Seq>>44] = true
		}
		if len(parts) > 1 {
			n++
		}
	}
	return n
}

// checkBackfill computes every feature of keys in backfill as of now minus
// each of agos and compares each value with the brute force over the
// produced events. With snaps, every partition must start from a snapshot.
func checkBackfill(t *testing.T, k *kafkaCluster, cfg *config.File, p *produced, keys []string, now time.Time, agos []time.Duration, snaps *snapshot.Store) {
	t.Helper()
	var ids []string
	for _, f := range cfg.Features {
		ids = append(ids, f.ID)
	}
	var points []backfill.Point
	for _, key := range keys {
		for _, ago := range agos {
			points = append(points, backfill.Point{Key: key, T: now.Add(-ago).UnixMilli()})
		}
	}
	vals, err := backfill.Compute(context.Background(), backfill.Options{Brokers: k.Brokers, Config: cfg, Features: ids, Snapshots: snaps}, points)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range vals.Sources {
		if snaps != nil && r.Snapshot == "" {
			t.Fatalf("backfill: partition %s/%d did not start from a snapshot", r.Topic, r.Partition)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var bad []string
	n := 0
	for r, pt := range points {
		for c, f := range vals.Features {
			got, ok := vals.Get(r, c)
			want, wantOK, _ := bruteForceLocked(p, f, pt.Key, pt.T)
			n++
			if ok != wantOK || (ok && !aggtest.Within(f.Aggregation, got, want)) {
				bad = append(bad, mismatch{key: pt.Key, feature: f.ID, got: &got, want: want, wantOK: wantOK}.String())
			}
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		t.Fatalf("backfill: %d of %d values differ from the brute force, e.g.:\n%s", len(bad), n, strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	t.Logf("backfill: %d values equal the brute force", n)
}

// TestMixedPartitionersStayExact produces the same keys to the same topics
// through two partitioners (franz-go's murmur2 default and librdkafka's
// CRC32 consistent_random), so that an entity's events are spread over
// partitions read by different workers, and requires every value to equal
// the brute force: online (two workers, one lookup replica), in backfill,
// and in skew (0 mismatches). It also checks that the workers count
// exactly the records found outside their key's canonical partition.
func TestMixedPartitionersStayExact(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 1))
	const users = 200
	keys := allKeys(users)
	m := newMixedProducers(t, k, cfg, cl)
	now := time.Now()
	evs := withTies(rng, genEvents(rng, 6000, users, 40*24*time.Hour, now))
	m.produce(ctx, rng, evs[:len(evs)/2])
	dir := t.TempDir()
	// One worker first, alone: it reads every record once, so its count
	// of off-canonical records is exact.
	w1, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w1"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	calls := 0
	exactLookup(t, ls, cfg, m.p, keys, 90*time.Second, &calls)
	checkOffCanonical(t, m, w1)
	// Then two workers share the partitions: an entity's partitions are
	// in different workers.
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w2"))
	for i := len(evs) / 2; i < len(evs); i += 500 {
		m.produce(ctx, rng, evs[i:min(i+500, len(evs))])
	}
	if n := spreadKeys(m.p, "transactions"); n < users/2 {
		t.Fatalf("only %d of %d keys have transactions in more than one partition: the test does not test the merge", n, users)
	}
	at := exactLookup(t, ls, cfg, m.p, keys, 90*time.Second, &calls)
	t.Logf("%d events (%d keys with transactions in several partitions): every lookup value equals the brute force", m.p.total, spreadKeys(m.p, "transactions"))

	checkBackfill(t, k, cfg, m.p, keys, time.UnixMilli(at), []time.Duration{0, time.Hour, 36 * time.Hour, 10 * 24 * time.Hour}, nil)

	waitLogged(t, cl, cfg.Kafka.LookupLogTopic, int64(calls*len(keys)), 60*time.Second)
	served := map[servedAt]bool{}
	record(served, keys, at)
	rep, err := skew.Run(ctx, skew.Options{Brokers: k.Brokers, Config: cfg, Mode: backfill.ModeArrival, Keep: keepServed(served), Examples: 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(keys) * len(cfg.Features)); rep.Mismatches != 0 || rep.Compared != want {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("skew: %d mismatches of %d values compared (want 0 of %d):\n%s", rep.Mismatches, rep.Compared, want, b.String())
	}
}

// TestMixedPartitionersSnapshots checks the snapshot paths with an
// entity's events in several partitions: a lookup replica cold started from
// a worker's snapshots (one per source partition, each holding a partial
// series of the entity) and a backfill seeded from them answer the brute
// force.
func TestMixedPartitionersSnapshots(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 5))
	const users = 100
	keys := allKeys(users)
	m := newMixedProducers(t, k, cfg, cl)
	dir := t.TempDir()
	store, _ := newSnapshotStore(t, dir)
	w := snapshottingWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"), store)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	m.produce(ctx, rng, withTies(rng, genEvents(rng, 4000, users, 40*24*time.Hour, time.Now())))
	calls := 0
	exactLookup(t, ls, cfg, m.p, keys, 90*time.Second, &calls)
	snap := takeSnapshot(t, w)
	cold, _ := runLookupFrom(t, k.Brokers, cfg, filepath.Join(dir, "cold"), store)
	n := waitExact(t, cold, cfg, m.p, keys, 90*time.Second)
	t.Logf("lookup cold started from snapshot %s: %d values equal the brute force", snap.ID, n)
	time.Sleep(5 * time.Millisecond) // spine times after the snapshot's creation
	checkBackfill(t, k, cfg, m.p, keys, time.Now(), []time.Duration{0}, store)
}

// TestMixedPartitionersKill9 is TestMixedPartitionersStayExact's online
// check with a worker process killed with SIGKILL at random moments while
// events from both partitioners stream in.
func TestMixedPartitionersKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("long: kills and restarts a worker process")
	}
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	w := startProc(t, "worker", "worker", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "worker"), "--metrics", "", "--log-level", "warn",
		"--instance-id", "mixed-worker", "--session-timeout", "6s")
	// A second, in-process worker shares the partitions, so that an
	// entity's partitions are in different processes.
	startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w2"))

	const users, total = 150, 60_000
	rng := rand.New(rand.NewPCG(16, 9))
	var genMu sync.Mutex
	m := newMixedProducers(t, k, cfg, cl)
	gen := func(n int) []event {
		genMu.Lock()
		defer genMu.Unlock()
		return withTies(rng, genEvents(rng, n, users, 40*24*time.Hour, time.Now()))
	}
	prng := rand.New(rand.NewPCG(16, 10))
	done := make(chan struct{})
	go func() {
		defer close(done)
		streamEvents(t, gen, total, 1000, 150*time.Millisecond, func(evs []event) { m.produce(ctx, prng, evs) })
	}()
	kills := 0
	krng := rand.New(rand.NewPCG(16, 11))
	for streaming := true; streaming || kills < 6; {
		select {
		case <-done:
			streaming = false
		default:
		}
		time.Sleep(time.Duration(300+krng.IntN(1500)) * time.Millisecond)
		if err := w.exited(); err != nil {
			t.Fatal(err)
		}
		w.kill()
		kills++
		time.Sleep(time.Duration(krng.IntN(300)) * time.Millisecond)
		w.restart()
	}
	<-done
	keys := allKeys(users)
	n := waitExact(t, ls, cfg, m.p, keys, 3*time.Minute)
	t.Logf("survived %d kill -9 of a worker during %d events from two partitioners (%d keys in several partitions); %d values equal the brute force",
		kills, m.p.total, spreadKeys(m.p, "transactions"), n)
}

// checkOffCanonical requires the workers' featurepipe_records_off_canonical_partition_total,
// summed over sources, to equal the records the CRC32 producer put outside
// their murmur2 partition.
func checkOffCanonical(t *testing.T, m *mixedProducers, workers ...*worker.Worker) {
	t.Helper()
	m.mu.Lock()
	want := m.offCanon
	m.mu.Unlock()
	got := 0.0
	for _, w := range workers {
		for _, src := range m.cfg.Sources {
			got += testutil.ToFloat64(w.Metrics().OffCanonical.WithLabelValues(src.Name))
		}
	}
	if int(got) != want || want == 0 {
		t.Fatalf("featurepipe_records_off_canonical_partition_total = %v, want %d (records the CRC32 producer put outside their murmur2 partition)", got, want)
	}
	t.Logf("featurepipe_records_off_canonical_partition_total = %v: exactly the records outside their canonical partition", got)
}

// TestOlderFeatureLogLayoutIsRepublishedOnce: a worker whose store has
// state published under the feature-log key layout without the source
// partition (which lookup replicas now skip) republishes every tile once
// under the new layout, and not again on the next start.
func TestOlderFeatureLogLayoutIsRepublishedOnce(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 7))
	const users = 60
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
	dir := t.TempDir()
	wdir := filepath.Join(dir, "w1")
	_, stop := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, wdir)
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	waitExact(t, ls, cfg, p, allKeys(users), 90*time.Second)
	stop()

	// Make the store look like one of an older featurepipe: no layout marker.
	st, err := state.Open(wdir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch()
	for _, src := range cfg.Sources {
		for part := range cfg.Kafka.Partitions {
			_ = b.Delete(keys.PublishedLayout(src.Topic, part), nil)
		}
	}
	if err := st.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// At least the two lifetime transaction features of every user with
	// transactions have a tile.
	p.mu.Lock()
	atLeast := 2 * len(p.events["transactions"])
	p.mu.Unlock()

	// restart starts the worker on wdir and returns the tiles it published:
	// once at least enough were and none for 2s (the republish is over),
	// else after window (a loaded machine may take longer than a quiet one
	// to republish).
	restart := func(enough float64, window time.Duration) float64 {
		t.Helper()
		w, stop := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, wdir)
		defer stop()
		deadline := time.Now().Add(60 * time.Second)
		for testutil.ToFloat64(w.Metrics().Assigned) < float64(2*cfg.Kafka.Partitions) {
			if time.Now().After(deadline) {
				t.Fatal("the worker was not assigned every partition")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Republishing happens right after the assignment; give it time.
		var n float64
		changed := time.Now()
		for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if m := testutil.ToFloat64(w.Metrics().TilesPublished); m != n {
				n, changed = m, time.Now()
			}
			if n >= enough && time.Since(changed) >= 2*time.Second {
				break // the republish is over
			}
		}
		return n
	}
	if n := restart(float64(atLeast), time.Minute); n < float64(atLeast) {
		t.Fatalf("after the upgrade the worker republished %v tiles, want at least %d", n, atLeast)
	} else {
		t.Logf("upgrade: %v tiles republished under the new layout", n)
	}
	if n := restart(math.Inf(1), 3*time.Second); n != 0 {
		t.Fatalf("the next start republished %v tiles again, want 0", n)
	}
	fresh, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "fresh"))
	waitExact(t, fresh, cfg, p, allKeys(users), 90*time.Second)
}
