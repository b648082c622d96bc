package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/aggregations/aggtest"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// kafkaCluster is the broker a test runs against.
type kafkaCluster = testkit.Kafka

// featureFile is the feature file every end-to-end test uses: one entity,
// two sources and features of every aggregation (the sketches included) over
// finite and lifetime windows, with default and explicit hops.
//
// txn_last_fresh has a ttl and txn_sum_ratio is derived: every test
// checks them too (bruteForceLocked, derived_test.go).
var featureFile = testkit.KafkaSection(4) + testkit.UserTransactions + `  - name: logins
    topic: logins-{{ID}}
    schema: login.avsc
    event_time: ts
features:
  - {name: txn_avg_30d, version: 1, entity: user, source: transactions, aggregation: avg, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_sum_1d, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_count_7d, version: 1, entity: user, source: transactions, aggregation: count, window: 7d, hop: 6h, owner: t, description: d}
  - {name: txn_min_7d, version: 1, entity: user, source: transactions, aggregation: min, field: amount, window: 7d, owner: t, description: d}
  - {name: txn_max_30d, version: 1, entity: user, source: transactions, aggregation: max, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: txn_last, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
  - {name: login_count_1h, version: 1, entity: user, source: logins, aggregation: count, window: 1h, owner: t, description: d}
  - {name: txn_var_1d, version: 1, entity: user, source: transactions, aggregation: variance, field: amount, window: 1d, owner: t, description: d}
  - {name: txn_stddev_7d, version: 1, entity: user, source: transactions, aggregation: stddev, field: amount, window: 7d, owner: t, description: d}
  - {name: txn_var_samp_30d, version: 1, entity: user, source: transactions, aggregation: variance_samp, field: amount, window: 30d, hop: 12h, owner: t, description: d}
  - {name: txn_stddev_samp_life, version: 1, entity: user, source: transactions, aggregation: stddev_samp, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_first, version: 1, entity: user, source: transactions, aggregation: first, field: amount, window: lifetime, owner: t, description: d}
  - {name: txn_distinct_30d, version: 1, entity: user, source: transactions, aggregation: approx_distinct, field: amount, window: 30d, owner: t, description: d}
  - {name: txn_p95_7d, version: 1, entity: user, source: transactions, aggregation: approx_percentile, percentile: 0.95, field: amount, window: 7d, hop: 6h, owner: t, description: d}
  - {name: txn_last_fresh, version: 1, entity: user, source: transactions, aggregation: last, field: amount, window: lifetime, ttl: 2d, owner: t, description: d}
  - {name: txn_sum_ratio, version: 1, entity: user, expression: "txn_sum_1d / txn_avg_30d", owner: t, description: d}
`

// writeConfig writes a feature file (with its schemas) whose topic and
// group names are unique to this test.
func writeConfig(t testing.TB, text string) *config.File {
	t.Helper()
	return testkit.WriteConfig(t, text, nil)
}

// produced remembers every valid event by source and entity key, with its
// Kafka offset as the tie-breaking sequence, for brute-force checks.
type produced struct {
	mu       sync.Mutex
	events   map[string]map[string][]aggregations.Event // source -> key -> events
	entityOf map[string]string                          // source -> its entity
	total    int
}

func newProduced() *produced {
	return &produced{events: map[string]map[string][]aggregations.Event{}, entityOf: map[string]string{}}
}

// addLocked records one produced event of key in source (p.mu held),
// remembering the source's entity for knownLocked.
func (p *produced) addLocked(cfg *config.File, source, key string, e aggregations.Event) {
	if p.events[source] == nil {
		p.events[source] = map[string][]aggregations.Event{}
		if src, ok := cfg.Source(source); ok && src.Entity != nil {
			p.entityOf[source] = src.Entity.Name
		}
	}
	p.events[source][key] = append(p.events[source][key], e)
	p.total++
}

// knownLocked reports whether key of entity has an event with ts < T in any
// source (p.mu held): the lookup's NOT_FOUND rule, by definition.
func (p *produced) knownLocked(entity, key string, T int64) bool {
	for src, byKey := range p.events {
		if p.entityOf[src] != entity {
			continue
		}
		for _, e := range byKey[key] {
			if e.TS < T {
				return true
			}
		}
	}
	return false
}

// event is one generated input event.
type event struct {
	source string
	key    string
	ts     int64
	amount float64
}

// genEvents returns n events for keys entities spread over the span before
// now, in random (so out-of-event-time) order.
func genEvents(rng *rand.Rand, n, keys int, span time.Duration, now time.Time) []event {
	out := make([]event, n)
	for i := range out {
		src := "transactions"
		if rng.IntN(5) == 0 {
			src = "logins"
		}
		// Some events within the last hours so short windows are not empty.
		age := time.Duration(rng.Int64N(int64(span)))
		if rng.IntN(4) == 0 {
			age = time.Duration(rng.Int64N(int64(3 * time.Hour)))
		}
		out[i] = event{
			source: src,
			key:    fmt.Sprintf("user-%03d", rng.IntN(keys)),
			ts:     now.Add(-age - time.Second).UnixMilli(),
			amount: float64(rng.IntN(1_000_000)) / 100,
		}
	}
	return out
}

// produceEvents sends events and records them with their offsets.
func produceEvents(t testing.TB, ctx context.Context, cl *kgo.Client, cfg *config.File, events []event, into *produced) {
	t.Helper()
	encs := map[string]*produce.Encoder{}
	recs := make([]*kgo.Record, 0, len(events))
	for _, e := range events {
		enc := encs[e.source]
		if enc == nil {
			var err error
			if enc, err = produce.NewEncoder(cfg, e.source); err != nil {
				t.Fatal(err)
			}
			encs[e.source] = enc
		}
		r, err := enc.Record(testkit.Event(e.source, e.key, e.ts, e.amount))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	results := cl.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	into.mu.Lock()
	defer into.mu.Unlock()
	// Results come in completion order; the records themselves carry
	// their offsets, in input order.
	for i, r := range recs {
		e := events[i]
		into.addLocked(cfg, e.source, e.key, aggregations.Event{TS: e.ts, Seq: aggregations.Seq(r.Partition, r.Offset), Value: e.amount})
	}
}

// runWorker runs an in-process worker on its own store until stop is called.
func runWorker(t testing.TB, brokers []string, cfg *config.File, dir string) (stop func()) {
	t.Helper()
	_, stop = startWorker(t, worker.Options{Brokers: brokers, Config: cfg}, dir)
	return stop
}

// startWorker runs an in-process worker with options o on a store opened in
// dir until stop or the end of the test (see launchWorker).
func startWorker(t testing.TB, o worker.Options, dir string) (w *worker.Worker, stop func()) {
	t.Helper()
	r := launchWorker(t, o, dir)
	return r.w, r.stop
}

// workerRun is an in-process worker started by launchWorker.
type workerRun struct {
	w *worker.Worker
	// done receives the error Run returned (nil after a stop), once. A
	// test that takes it owns that error: stop no longer reports it.
	done <-chan error
	// stop cancels Run, waits for it to return, reports its error as a
	// test error (unless taken from done) and closes the store. It is
	// idempotent and also runs when the test ends.
	stop func()
}

// launchWorker runs an in-process worker with options o on a store opened
// in dir (no fsync) until stop or the end of the test. Group timeouts are
// short for tests: SessionTimeout defaults to 6s (Kafka's minimum) and the
// rebalance timeout is 10s.
func launchWorker(t testing.TB, o worker.Options, dir string) *workerRun {
	t.Helper()
	st, err := state.Open(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 6 * time.Second
	}
	if o.RebalanceTimeout == 0 {
		o.RebalanceTimeout = 10 * time.Second
	}
	w, err := worker.New(o)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	exited := make(chan struct{})
	go func() { errc <- w.Run(ctx); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-exited
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			default: // the test took Run's error from done
			}
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &workerRun{w: w, done: errc, stop: stop}
}

// lookupServer is a lookup service: in-process behind an HTTP test server
// (svc set), or a subprocess (svc nil).
type lookupServer struct {
	svc  *lookup.Service
	url  string
	stop func()
}

func (ls *lookupServer) ready() bool {
	if ls.svc != nil {
		return ls.svc.Ready()
	}
	resp, err := http.Get(ls.url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func runLookup(t testing.TB, brokers []string, cfg *config.File, dir string) (*lookupServer, func()) {
	t.Helper()
	st, err := lookup.OpenStore(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lookup.New(lookup.Options{Brokers: brokers, Config: cfg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ls := serveLookup(t, svc, st)
	return ls, ls.stop
}

// serveLookup runs svc and serves it over HTTP until the test ends (or
// stop); it closes st afterwards.
func serveLookup(t testing.TB, svc *lookup.Service, st *state.Store) *lookupServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	srv := httptest.NewServer(svc.Handler())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("lookup: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &lookupServer{svc: svc, url: srv.URL, stop: stop}
}

// postJSON posts body and decodes the answer into out, returning the status.
func postJSON(t testing.TB, url string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("decode answer of %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// mismatch describes one wrong value, or (note set) a wrong answer.
type mismatch struct {
	key, feature string
	got          *float64
	want         float64
	wantOK       bool
	note         string // e.g. "HTTP 503", "missing from the answer"
}

func (m mismatch) String() string {
	if m.note != "" {
		return fmt.Sprintf("%s %s: %s", m.key, m.feature, m.note)
	}
	got := "null"
	if m.got != nil {
		got = fmt.Sprint(*m.got)
	}
	want := "null"
	if m.wantOK {
		want = fmt.Sprint(m.want)
	}
	return fmt.Sprintf("%s %s: got %s, want %s", m.key, m.feature, got, want)
}

// byID names a feature as name@version: versions side by side are each
// requested (and checked) on their own.
func byID(f *config.Feature) string { return f.ID }

// byName names a feature by its bare name, as GET /v1/features answers it.
func byName(f *config.Feature) string { return f.Name }

// lookupAll posts a lookup of every feature of cfg (requested as name(f))
// for keys. The status is 200 or the mismatch says why not.
func lookupAll(t testing.TB, ls *lookupServer, cfg *config.File, keys []string, name func(*config.Feature) string) (*lookup.LookupResponse, []mismatch) {
	t.Helper()
	names := make([]string, len(cfg.Features))
	for i, f := range cfg.Features {
		names[i] = name(f)
	}
	var resp lookup.LookupResponse
	if code := postJSON(t, ls.url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: keys, Features: names}, &resp); code != http.StatusOK {
		return nil, []mismatch{{key: "*", feature: "*", note: fmt.Sprintf("HTTP %d", code)}}
	}
	return &resp, nil
}

// compareAnswer compares resp, the answer to a lookup of keys and feats
// (each requested as name(f)), with the brute force over the produced
// events as of resp.AsOf. Besides wrong values, a missing or extra result,
// a result for another key than requested at its position, and a requested
// feature missing from a result are mismatches. It returns the mismatches
// and the number of values compared (len(keys)*len(feats) when the answer
// has the requested shape).
func compareAnswer(resp *lookup.LookupResponse, keys []string, feats []*config.Feature, name func(*config.Feature) string, p *produced) ([]mismatch, int) {
	if len(resp.Results) != len(keys) {
		return []mismatch{{key: "*", feature: "*", note: fmt.Sprintf("%d results for %d keys", len(resp.Results), len(keys))}}, 0
	}
	T := resp.AsOf.UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	var bad []mismatch
	n := 0
	for i, r := range resp.Results {
		if r.Key != keys[i] {
			bad = append(bad, mismatch{key: keys[i], feature: "*", note: fmt.Sprintf("result %d is for key %q", i, r.Key)})
			continue
		}
		for _, f := range feats {
			fv, present := r.Features[name(f)]
			if !present {
				bad = append(bad, mismatch{key: r.Key, feature: name(f), note: "missing from the answer"})
				continue
			}
			// The status contract: NOT_FOUND (null) for a key without any
			// event before T in any source of its entity, else PRESENT,
			// EMPTY_WINDOW or EXPIRED (see bruteForceLocked).
			want, ok, status := bruteForceLocked(p, f, r.Key, T)
			n++
			if got := fv.Value; (got != nil) != ok || (ok && !aggtest.Within(f.Aggregation, *got, want)) {
				bad = append(bad, mismatch{key: r.Key, feature: f.ID, got: got, want: want, wantOK: ok})
			} else if fv.Status != status && fv.Status != lookup.StatusWarmingUp {
				bad = append(bad, mismatch{key: r.Key, feature: f.ID, got: got, want: want, wantOK: ok, note: "status " + fv.Status + ", want " + status})
			}
		}
	}
	return bad, n
}

// checkLookups asks the lookup service for every feature (by name@version)
// of every key and compares the answer with the brute force (compareAnswer).
// It returns the mismatches and the number of values compared.
func checkLookups(t testing.TB, ls *lookupServer, cfg *config.File, p *produced, keys []string) ([]mismatch, int) {
	t.Helper()
	resp, bad := lookupAll(t, ls, cfg, keys, byID)
	if bad != nil {
		return bad, 0
	}
	return compareAnswer(resp, keys, cfg.Features, byID, p)
}

// waitExact polls until every lookup value (len(keys)*len(cfg.Features) of
// them) equals the brute force and the service is ready, failing with the
// first mismatches after timeout. It returns the number of values compared.
func waitExact(t testing.TB, ls *lookupServer, cfg *config.File, p *produced, keys []string, timeout time.Duration) int {
	t.Helper()
	want := len(keys) * len(cfg.Features)
	deadline := time.Now().Add(timeout)
	for {
		bad, n := checkLookups(t, ls, cfg, p, keys)
		ready := ls.ready()
		if len(bad) == 0 && n == want && ready {
			return n
		}
		if time.Now().After(deadline) {
			sort.Slice(bad, func(i, j int) bool { return bad[i].key < bad[j].key })
			if len(bad) > 10 {
				bad = bad[:10]
			}
			t.Fatalf("after %s, %d of %d values compared (ready: %v); values still differ from brute force, e.g.:\n%v", timeout, n, want, ready, bad)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func allKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%03d", i)
	}
	return keys
}

func decodeInto(t testing.TB, resp *http.Response, out any) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d", resp.Request.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// setup starts the broker, writes the feature file text with names unique
// to the test, and returns a client for which every topic it names exists
// (testkit.Setup).
func setup(t testing.TB, text string) (*kafkaCluster, *config.File, *kgo.Client) {
	t.Helper()
	return testkit.Setup(t, text, testkit.SetupOptions{})
}

// envInt reads a positive integer knob of a benchmark, else def.
func envInt(b testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// produceTransactions produces n transactions for benchmarks, without
// keeping them: next returns the user and event time of the i-th.
func produceTransactions(b testing.TB, cl *kgo.Client, cfg *config.File, n int, next func(i int) (user string, ts int64)) {
	b.Helper()
	enc, err := produce.NewEncoder(cfg, "transactions")
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	batch := make([]*kgo.Record, 0, 5000)
	flush := func() {
		if err := cl.ProduceSync(context.Background(), batch...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		user, ts := next(i)
		r, err := enc.Record(testkit.Event("transactions", user, ts, float64(rng.IntN(100000))/100))
		if err != nil {
			b.Fatal(err)
		}
		if batch = append(batch, r); len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}
