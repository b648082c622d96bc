package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// probes measure the freshness of each partition of the transactions
// source end to end: one entity key per partition gets an event every
// interval, and a partition's freshness lag at an instant is how long its
// oldest probe event not yet counted by the lookup service has waited.
type probes struct {
	t    testing.TB
	cl   *kgo.Client
	enc  *produce.Encoder
	p    *produced
	url  string
	keys []string // one per partition, by partition
	// candidates are every key tried, each with one event or more.
	candidates []string
	sent       map[string][]time.Time // per key, send time of each probe event
	mu         sync.Mutex
	nSent      int
}

// newProbes finds one entity key per partition of the transactions topic
// (by producing one event for candidate keys, recorded in p like every
// other event).
func newProbes(t testing.TB, cl *kgo.Client, enc *produce.Encoder, p *produced, url string, partitions int) *probes {
	t.Helper()
	pr := &probes{t: t, cl: cl, enc: enc, p: p, url: url, keys: make([]string, partitions), sent: map[string][]time.Time{}}
	found := 0
	for i := 0; found < partitions; i++ {
		if i > 1000 {
			t.Fatalf("no probe key found for every partition after %d candidates", i)
		}
		key := fmt.Sprintf("probe-%03d", i)
		r := pr.send(key)
		pr.candidates = append(pr.candidates, key)
		if pr.keys[r.Partition] == "" {
			pr.keys[r.Partition] = key
			found++
		}
	}
	return pr
}

// send produces one probe event for key and records it.
func (pr *probes) send(key string) *kgo.Record {
	ts := time.Now().Add(-time.Second).UnixMilli()
	r, err := pr.enc.Record(testkit.Event("transactions", key, ts, 1))
	if err != nil {
		pr.t.Fatal(err)
	}
	at := time.Now()
	if err := pr.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		pr.t.Errorf("produce probe: %v", err)
		return r
	}
	pr.p.mu.Lock()
	if pr.p.events["transactions"] == nil {
		pr.p.events["transactions"] = map[string][]aggregations.Event{}
	}
	pr.p.events["transactions"][key] = append(pr.p.events["transactions"][key], aggregations.Event{TS: ts, Seq: r.Offset, Value: 1})
	pr.p.total++
	pr.p.mu.Unlock()
	pr.mu.Lock()
	pr.sent[key] = append(pr.sent[key], at)
	pr.nSent++
	pr.mu.Unlock()
	return r
}

// sendAll sends one probe event to every partition.
func (pr *probes) sendAll() {
	for _, k := range pr.keys {
		pr.send(k)
	}
}

// lags returns, per partition, its freshness lag now (0: every probe event
// counted), or nil if the lookup did not answer.
func (pr *probes) lags() []time.Duration {
	var resp lookup.LookupResponse
	if code := postJSON(pr.t, pr.url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: pr.keys, Features: []string{"txn_count_life"}}, &resp); code != http.StatusOK || len(resp.Results) != len(pr.keys) {
		return nil
	}
	now := time.Now()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := make([]time.Duration, len(pr.keys))
	for i, key := range pr.keys {
		seen := 0
		if v := resp.Results[i].Features["txn_count_life"].Value; v != nil {
			seen = int(*v)
		}
		if sent := pr.sent[key]; seen < len(sent) {
			out[i] = now.Sub(sent[seen])
		}
	}
	return out
}

// ownEvent is a worker taking (assigned) or giving up a partition.
type ownEvent struct {
	at        time.Time
	partition int32
	assigned  bool
}

// owned is a worker's ownership history of one topic's partitions.
type owned []ownEvent

// ownership reads, from the log of a worker (JSON, zap's production
// encoder) at path, when it was assigned and gave up (revoked or lost)
// each partition of topic.
func ownership(t testing.TB, path, topic string) owned {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out owned
	for _, line := range bytes.Split(b, []byte("\n")) {
		var entry struct {
			TS         float64            `json:"ts"`
			Msg        string             `json:"msg"`
			Topic      string             `json:"topic"`
			Partition  int32              `json:"partition"`
			Partitions map[string][]int32 `json:"partitions"`
		}
		if len(line) == 0 || json.Unmarshal(line, &entry) != nil {
			continue
		}
		at := time.Unix(0, int64(entry.TS*1e9))
		switch entry.Msg {
		case "partition assigned":
			if entry.Topic == topic {
				out = append(out, ownEvent{at, entry.Partition, true})
			}
		case "partitions revoked", "partitions lost":
			for _, p := range entry.Partitions[topic] {
				out = append(out, ownEvent{at, p, false})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b ownEvent) int { return a.at.Compare(b.at) })
	return out
}

// since returns since when partition has been owned at t (ok false: not
// owned at t).
func (o owned) since(partition int32, t time.Time) (time.Time, bool) {
	var from time.Time
	ok := false
	for _, e := range o {
		if e.at.After(t) {
			break
		}
		if e.partition == partition {
			from, ok = e.at, e.assigned
		}
	}
	return from, ok
}

// revocations counts the partitions given up.
func (o owned) revocations() int {
	n := 0
	for _, e := range o {
		if !e.assigned {
			n++
		}
	}
	return n
}

// owners describes the group: its state, its number of members and, per
// member client id, the partitions of topic they are assigned.
func owners(ctx context.Context, adm *kadm.Client, group, topic string) (string, int, map[string][]int32, error) {
	dgs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return "", 0, nil, err
	}
	dg, ok := dgs[group]
	if !ok || dg.Err != nil {
		return "", 0, nil, fmt.Errorf("describe group %s: %v", group, dg.Err)
	}
	out := map[string][]int32{}
	for _, m := range dg.Members {
		c, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range c.Topics {
			if t.Topic == topic {
				out[m.ClientID] = append(out[m.ClientID], t.Partitions...)
			}
		}
	}
	return dg.State, len(dg.Members), out, nil
}

// TestCrashLoopingWorkerDoesNotStallTheOthers is issue 17: a steady worker
// and a lookup replica run while a second worker process is started and
// killed with SIGKILL eight times, each 0.2–1.5 s after its start (a
// crash-looping pod), events streaming in. The partitions the steady worker
// keeps must stay fresh during the loop, the group must converge soon after
// a last, healthy start, and every value must equal the brute force at the
// end. With dynamic and with static membership.
func TestCrashLoopingWorkerDoesNotStallTheOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("long: crash-loops a worker process")
	}
	for _, static := range []bool{false, true} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) { testCrashLoop(t, static) })
	}
}

func testCrashLoop(t *testing.T, static bool) {
	const (
		session   = 6 * time.Second  // Kafka's minimum
		rebalance = 10 * time.Second // the workers' default
		kills     = 8
		users     = 300
		steadyID  = "featurepipe-steady"
		freshness = session // bound on the freshness lag of the steady worker's partitions, on top of the baseline lag
	)
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	dir := t.TempDir()
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	rng := rand.New(rand.NewPCG(17, 18))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg, genEvents(rng, 15_000, users, 40*24*time.Hour, time.Now()), p)

	so := worker.Options{Brokers: k.Brokers, Config: cfg, ClientID: steadyID, SessionTimeout: session, RebalanceTimeout: rebalance}
	args := []string{"worker", "--brokers", k.Brokers[0], "--config", cfg.Path,
		"--data", filepath.Join(dir, "crashing"), "--metrics", "", "--log-level", "info",
		"--session-timeout", session.String(), "--rebalance-timeout", rebalance.String()}
	if static {
		so.InstanceID = "steady"
		args = append(args, "--instance-id", "crashing")
	}
	logf, err := os.Create(filepath.Join(dir, "steady.log"))
	if err != nil {
		t.Fatal(err)
	}
	so.Log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logf), zap.InfoLevel))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("steady worker log:\n%s", b)
		}
	})
	launchWorker(t, so, filepath.Join(dir, "steady"))
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		t.Fatal(err)
	}
	pr := newProbes(t, cl, enc, p, ls.url, int(cfg.Kafka.Partitions))
	keys := append(allKeys(users), pr.candidates...)
	waitTotal(t, ls.url, keys, transactionsProduced(p), 2*time.Minute)

	adm := kadm.NewClient(cl)
	topic := cfg.Sources[0].Topic
	if cfg.Sources[0].Name != "transactions" {
		t.Fatalf("first source is %s, want transactions", cfg.Sources[0].Name)
	}

	// During the loop: events stream in, probes every 200ms, and every
	// 100ms a sample of each partition's freshness lag.
	type sample struct {
		at   time.Time
		lags []time.Duration
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	loopCtx, endLoop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { // events
		defer bg.Done()
		erng := rand.New(rand.NewPCG(19, 20))
		for loopCtx.Err() == nil {
			produceEvents(t, ctx, cl, cfg, genEvents(erng, 300, users, 40*24*time.Hour, time.Now()), p)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() { // probes
		defer bg.Done()
		for loopCtx.Err() == nil {
			pr.sendAll()
			time.Sleep(200 * time.Millisecond)
		}
	}()
	go func() { // samples
		defer bg.Done()
		for loopCtx.Err() == nil {
			if lags := pr.lags(); lags != nil {
				mu.Lock()
				samples = append(samples, sample{time.Now(), lags})
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// The steady worker alone, under the same stream and probes, for a
	// baseline: a loaded machine (CI, the race detector) lags without any
	// crash, and the bound below allows for that much on top of a session.
	time.Sleep(3 * time.Second)
	mu.Lock()
	loopFrom := len(samples)
	var baseline time.Duration
	for _, s := range samples {
		for _, lag := range s.lags {
			baseline = max(baseline, lag)
		}
	}
	mu.Unlock()

	crashing := startProc(t, "crashing-worker", args...)
	krng := rand.New(rand.NewPCG(21, 22))
	for i := 0; i < kills; i++ {
		time.Sleep(time.Duration(200+krng.IntN(1300)) * time.Millisecond)
		if err := crashing.exited(); err != nil {
			t.Fatal(err)
		}
		crashing.kill()
		if i < kills-1 {
			crashing.restart()
		}
	}
	time.Sleep(500 * time.Millisecond) // samples after the last kill
	endLoop()
	bg.Wait()

	// A lag is the steady worker's when it owned the partition since the
	// oldest probe event not yet counted was sent: its own log says when
	// it was assigned and gave up each partition. (Partitions it gave to
	// the crashing worker wait for that member's death to be noticed.)
	own := ownership(t, logf.Name(), topic)
	mu.Lock()
	var maxSteady, maxAny time.Duration
	counted := 0
	for _, s := range samples[loopFrom:] {
		for part, lag := range s.lags {
			maxAny = max(maxAny, lag)
			if since, ok := own.since(int32(part), s.at); ok && !since.After(s.at.Add(-lag)) {
				maxSteady = max(maxSteady, lag)
				counted++
			}
		}
	}
	nSamples := len(samples) - loopFrom
	mu.Unlock()
	t.Logf("crash loop: %d kill -9 of the second worker; %d freshness samples, %d of them (per partition) on a partition the steady worker owned; it gave up partitions %d times",
		kills, nSamples, counted, own.revocations())
	t.Logf("largest freshness lag during the loop: %s on a partition the steady worker owned, %s on any partition",
		maxSteady.Round(time.Millisecond), maxAny.Round(time.Millisecond))
	if counted < 20 {
		t.Fatalf("too few samples (%d of %d) on the steady worker's partitions to judge freshness", counted, nSamples)
	}
	t.Logf("baseline: the largest lag with the steady worker alone was %s", baseline.Round(time.Millisecond))
	if bound := freshness + baseline; maxSteady > bound {
		t.Errorf("a partition the steady worker owned was %s stale during the loop (bound: a session, %s, plus the baseline lag, %s): the crash loop stalled it",
			maxSteady.Round(time.Millisecond), freshness, baseline.Round(time.Millisecond))
	}

	// A last, healthy start: the group converges (both workers own
	// partitions, all assigned) and the pipeline catches up.
	want := transactionsProduced(p)
	start := time.Now()
	crashing.restart()
	var converged time.Duration
	for converged == 0 {
		if time.Since(start) > 2*session+30*time.Second {
			t.Fatalf("the group did not converge within %s of the last start", time.Since(start).Round(time.Millisecond))
		}
		if err := crashing.exited(); err != nil {
			t.Fatal(err)
		}
		state, members, own, err := owners(ctx, adm, cfg.Kafka.Group, topic)
		n := 0
		for _, parts := range own {
			n += len(parts)
		}
		if err == nil && state == "Stable" && members == 2 && len(own[steadyID]) > 0 && len(own[steadyID]) < n && n == int(cfg.Kafka.Partitions) {
			converged = time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitTotal(t, ls.url, keys, want, time.Minute)
	caughtUp := time.Since(start)
	t.Logf("after the loop: group converged %s and lookups caught up %s after the last start", converged.Round(time.Millisecond), caughtUp.Round(time.Millisecond))
	if limit := session + 5*time.Second; converged > limit {
		t.Errorf("the group converged %s after the last start, more than the session timeout + 5s (%s)", converged.Round(time.Millisecond), limit)
	}
	n := waitExact(t, ls, cfg, p, keys, time.Minute)
	t.Logf("%d values equal brute force", n)
}
