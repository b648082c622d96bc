package e2e

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
)

// streamEvents produces total events in batches while the test does its
// damage, and returns when all are acknowledged. Events are spread over 40
// days and out of order.
func streamEvents(t *testing.T, cfgEvents func(n int) []event, total, batch int, pause time.Duration, produce func([]event)) {
	t.Helper()
	for sent := 0; sent < total; sent += batch {
		produce(cfgEvents(min(batch, total-sent)))
		time.Sleep(pause)
	}
}

// transactionsProduced counts the produced transactions (the lifetime count
// that every lookup sums to).
func transactionsProduced(p *produced) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, evs := range p.events["transactions"] {
		n += len(evs)
	}
	return n
}

// lifetimeTotal sums txn_count_life over all users as the lookup service
// answers it.
func lifetimeTotal(t testing.TB, url string, keys []string) int {
	var resp lookup.LookupResponse
	if code := postJSON(t, url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: keys, Features: []string{"txn_count_life"}}, &resp); code != http.StatusOK {
		return -1
	}
	n := 0
	for _, r := range resp.Results {
		if v := r.Features["txn_count_life"].Value; v != nil {
			n += int(*v)
		}
	}
	return n
}

// waitTotal polls until the lookup service counts want transactions.
func waitTotal(t testing.TB, url string, keys []string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := lifetimeTotal(t, url, keys)
		if got == want {
			return time.Since(start)
		}
		if got > want {
			t.Fatalf("lookup counts %d transactions, only %d were produced: double counting", got, want)
		}
		if time.Since(start) > timeout {
			t.Fatalf("lookup counts %d of %d transactions after %s", got, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// viewRecordsApplied reads featurepipe_view_records_total, the feature-log
// records the lookup process at url applied to its view since it started,
// from its /metrics.
func viewRecordsApplied(t testing.TB, url string) float64 {
	t.Helper()
	const name = "featurepipe_view_records_total"
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/metrics: HTTP %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s/metrics: %s %q: %v", url, name, v, err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s/metrics: %v", url, err)
	}
	t.Fatalf("%s/metrics has no %s", url, name)
	return 0
}

// recordsWritten is the number of records ever written to topic: the sum
// of its end offsets. Exact for topics written without transactions, with
// no records deleted and not compacted (kfake compacts hourly, Apache Kafka
// never in the active segment: neither during a test).
func recordsWritten(t testing.TB, cl *kgo.Client, topic string) int64 {
	t.Helper()
	ends, err := kafka.EndOffsets(context.Background(), cl, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	for _, end := range ends {
		n += end
	}
	return n
}

// TestWorkerKill9DuringIngestion kills the worker process with SIGKILL at
// random moments while 200,000 events stream in, restarts it each time, and
// requires every value to equal the brute force: nothing lost, nothing
// counted twice. It then measures restart-to-caught-up with a backlog.
func TestWorkerKill9DuringIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("long: kills and restarts a worker process many times")
	}
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	w := startProc(t, "worker", "worker", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "worker"), "--metrics", "", "--log-level", "warn",
		"--instance-id", "crash-worker", "--session-timeout", "6s")

	const users, total = 300, 200_000
	rng := rand.New(rand.NewPCG(3, 4))
	var genMu sync.Mutex
	gen := func(n int) []event {
		genMu.Lock()
		defer genMu.Unlock()
		return genEvents(rng, n, users, 40*24*time.Hour, time.Now())
	}
	p := newProduced()
	produceBatch := func(evs []event) { produceEvents(t, ctx, cl, cfg, evs, p) }

	var streaming atomic.Bool
	streaming.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		streamEvents(t, gen, total, 2000, 150*time.Millisecond, produceBatch)
		streaming.Store(false)
	}()
	kills := 0
	krng := rand.New(rand.NewPCG(5, 6))
	for streaming.Load() || kills < 10 {
		time.Sleep(time.Duration(300+krng.IntN(2000)) * time.Millisecond)
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
	waitTotal(t, ls.url, keys, transactionsProduced(p), 2*time.Minute)
	n := waitExact(t, ls, cfg, p, keys, 2*time.Minute)
	t.Logf("survived %d kill -9 of the worker during %d events; %d values equal brute force", kills, p.total, n)

	// Restart to caught-up: kill, let a backlog build, restart, time it.
	for i := 0; i < 3; i++ {
		w.kill()
		produceBatch(gen(20_000))
		want := transactionsProduced(p)
		start := time.Now()
		w.restart()
		waitTotal(t, ls.url, keys, want, 2*time.Minute)
		t.Logf("restart with a backlog of 20000 events: caught up (visible in lookups) after %s", time.Since(start).Round(time.Millisecond))
	}
	waitExact(t, ls, cfg, p, keys, time.Minute)
}

// TestRebalancesUnderLoad starts and stops three workers in turn while events
// stream in; every partition moves several times and is resumed from each
// worker's own Pebble offsets.
func TestRebalancesUnderLoad(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	const users = 200
	rng := rand.New(rand.NewPCG(8, 9))
	p := newProduced()
	stops := map[string]func(){}
	start := func(name string) { stops[name] = runWorker(t, k.Brokers, cfg, filepath.Join(dir, name)) }
	stop := func(name string) { stops[name]() }
	schedule := []func(){
		func() { start("w1") }, func() { start("w2") }, func() { start("w3") },
		func() { stop("w1") }, func() { stop("w2") }, func() { start("w1") },
		func() { start("w2") }, func() { stop("w3") }, func() { stop("w1") },
		func() { start("w3") }, func() { stop("w2") }, func() { start("w1") },
	}
	for _, step := range schedule {
		produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)
		step()
		time.Sleep(300 * time.Millisecond)
	}
	n := waitExact(t, ls, cfg, p, allKeys(users), 2*time.Minute)
	t.Logf("%d worker starts/stops (rebalances) during %d events; %d values equal brute force", len(schedule), p.total, n)
}

// TestLookupKill9ComesBackToTheSameValues kills the lookup service process
// with SIGKILL and restarts it on the same Pebble view, which it must reuse
// (apply only part of the feature log, not replay all of it).
func TestLookupKill9ComesBackToTheSameValues(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "worker"))
	addr := freePort(t)
	url := "http://" + addr
	srv := startProc(t, "serve", "serve", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "view"), "--listen", addr, "--log-level", "warn")
	ls := &lookupServer{url: url}
	const users = 200
	rng := rand.New(rand.NewPCG(10, 12))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 10000, users, 40*24*time.Hour, time.Now()), p)
	waitReady(t, url, time.Minute)
	keys := allKeys(users)
	waitExact(t, ls, cfg, p, keys, time.Minute)
	before := lifetimeTotal(t, url, keys)
	for i := 0; i < 3; i++ {
		srv.kill()
		if i == 1 {
			// Events that arrive while it is down are picked up after restart.
			produceEvents(t, ctx, cl, cfg, genEvents(rng, 2000, users, 40*24*time.Hour, time.Now()), p)
		}
		srv.restart()
		took := waitReady(t, url, time.Minute)
		n := waitExact(t, ls, cfg, p, keys, time.Minute)
		// The restarted process resumed its Pebble view: it applied only
		// part of the feature log, where a wiped view replays all of it.
		applied, total := viewRecordsApplied(t, url), recordsWritten(t, cl, cfg.Kafka.FeatureLogTopic)
		if applied >= float64(total) {
			t.Fatalf("lookup kill -9 #%d: the restarted service applied %v feature-log records, the whole log (%d): it did not reuse its view", i+1, applied, total)
		}
		t.Logf("lookup kill -9 #%d: ready after %s having applied %v of %d feature-log records, %d values equal brute force", i+1, took.Round(time.Millisecond), applied, total, n)
	}
	if after := lifetimeTotal(t, url, keys); after != transactionsProduced(p) || after <= before {
		t.Fatalf("lifetime total %d after restarts, want %d", after, transactionsProduced(p))
	}
}

// TestBrokerRestartMidIngestion restarts Apache Kafka (SIGKILL, same data)
// while events stream in. Real Kafka only: the embedded broker lives in the
// test process.
func TestBrokerRestartMidIngestion(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	if !k.Real {
		t.Skip("restarts the broker process: runs against Apache Kafka (make test-kafka)")
	}
	script, err := filepath.Abs("../../deploy/kafka/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"))
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w2"))
	const users = 200
	rng := rand.New(rand.NewPCG(13, 14))
	p := newProduced()
	for i := 0; i < 10; i++ {
		produceEvents(t, ctx, cl, cfg, genEvents(rng, 3000, users, 40*24*time.Hour, time.Now()), p)
		if i == 4 {
			cmd := exec.Command(script, "restart", "--kill")
			cmd.Stderr = os.Stderr
			if out, err := cmd.Output(); err != nil {
				t.Fatalf("restart broker: %v %s", err, out)
			}
		}
	}
	n := waitExact(t, ls, cfg, p, allKeys(users), 3*time.Minute)
	t.Logf("broker killed and restarted mid-ingestion of %d events; %d values equal brute force", p.total, n)
}
