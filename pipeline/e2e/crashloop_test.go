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

// revokedBetween returns the partitions of topic that the worker logging
// (JSON, zap's production encoder) to path revoked or lost between from and
// to.
func revokedBetween(t testing.TB, path, topic string, from, to time.Time) map[int32]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]bool{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var entry struct {
			TS         float64            `json:"ts"`
			Msg        string             `json:"msg"`
			Partitions map[string][]int32 `json:"partitions"`
		}
		if len(line) == 0 || json.Unmarshal(line, &entry) != nil {
			continue
		}
		at := time.Unix(0, int64(entry.TS*1e9))
		if (entry.Msg != "partitions revoked" && entry.Msg != "partitions lost") || at.Before(from) || at.After(to) {
			continue
		}
		for _, p := range entry.Partitions[topic] {
			out[p] = true
		}
	}
	return out
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
		freshness = session // bound on a kept partition's freshness lag
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
	// 100ms a sample of each partition's freshness lag and, when the
	// group is stable, which partitions the steady worker owns.
	type sample struct {
		at   time.Time
		lags []time.Duration
	}
	var (
		mu      sync.Mutex
		samples []sample
		kept    map[int32]bool // owned by the steady worker in every stable description
		stable  int
	)
	loopStart := time.Now()
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
			if state, _, own, err := owners(loopCtx, adm, cfg.Kafka.Group, topic); err == nil && state == "Stable" {
				mu.Lock()
				stable++
				now := map[int32]bool{}
				for _, part := range own[steadyID] {
					now[part] = true
				}
				if kept == nil {
					kept = now
				}
				for part := range kept {
					if !now[part] {
						delete(kept, part)
					}
				}
				mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

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
	// A round can complete and the next begin between two descriptions:
	// the steady worker's log says exactly which partitions it gave up.
	for part := range revokedBetween(t, logf.Name(), topic, loopStart, time.Now()) {
		mu.Lock()
		delete(kept, part)
		mu.Unlock()
	}

	mu.Lock()
	var maxKept, maxAny time.Duration
	for _, s := range samples {
		for part, lag := range s.lags {
			maxAny = max(maxAny, lag)
			if kept[int32(part)] {
				maxKept = max(maxKept, lag)
			}
		}
	}
	keptParts := make([]int32, 0, len(kept))
	for part := range kept {
		keptParts = append(keptParts, part)
	}
	slices.Sort(keptParts)
	nSamples, nStable := len(samples), stable
	mu.Unlock()
	t.Logf("crash loop: %d kill -9 of the second worker; %d freshness samples, %d stable group descriptions; the steady worker kept partitions %v of %s",
		kills, nSamples, nStable, keptParts, topic)
	t.Logf("largest freshness lag during the loop: %s on a partition the steady worker kept, %s on any partition",
		maxKept.Round(time.Millisecond), maxAny.Round(time.Millisecond))
	if nSamples < 20 || nStable == 0 {
		t.Fatalf("too few samples (%d freshness, %d stable) to judge freshness", nSamples, nStable)
	}
	if len(keptParts) == 0 {
		t.Fatalf("the steady worker kept none of %s's partitions through the loop: every partition moved", topic)
	}
	if maxKept > freshness {
		t.Errorf("a partition the steady worker kept was %s stale during the loop (bound %s): the crash loop stalled it", maxKept.Round(time.Millisecond), freshness)
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
