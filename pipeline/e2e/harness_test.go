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
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/state"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/produce"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// kafkaCluster is the broker a test runs against.
type kafkaCluster = testkit.Kafka

func startKafka(t testing.TB) *kafkaCluster { return testkit.StartKafka(t) }

// featureFile is the feature file every end-to-end test uses: one entity,
// two sources and features of every aggregation over finite and lifetime
// windows, with default and explicit hops.
const featureFile = `
kafka:
  feature_log_topic: features-{{ID}}
  dead_letter_topic: dlq-{{ID}}
  lookup_log_topic: lookups-{{ID}}
  registry_topic: registry-{{ID}}
  group: workers-{{ID}}
  partitions: 4
entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: transactions-{{ID}}
    schema: transaction.avsc
    event_time: ts
  - name: logins
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
`

// writeConfig writes a feature file (with its schemas) whose topic and
// group names are unique to this test.
func writeConfig(t testing.TB, text string) *config.File {
	t.Helper()
	return testkit.WriteConfig(t, text, nil)
}

// writeConfigFiles is writeConfig with extra files (e.g. more schemas)
// written beside the feature file.
func writeConfigFiles(t testing.TB, text string, extra map[string]string) *config.File {
	t.Helper()
	return testkit.WriteConfig(t, text, extra)
}

// produced remembers every valid event by source and entity key, with its
// Kafka offset as the tie-breaking sequence, for brute-force checks.
type produced struct {
	mu     sync.Mutex
	events map[string]map[string][]aggregations.Event // source -> key -> events
	total  int
}

func newProduced() *produced {
	return &produced{events: map[string]map[string][]aggregations.Event{}}
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
		native := map[string]any{"user_id": e.key, "ts": e.ts}
		if e.source == "transactions" {
			native["merchant_id"], native["amount"], native["currency"] = "m1", e.amount, "EUR"
		} else {
			native["country"], native["success"] = "DE", true
		}
		r, err := enc.Record(native)
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
		if into.events[e.source] == nil {
			into.events[e.source] = map[string][]aggregations.Event{}
		}
		into.events[e.source][e.key] = append(into.events[e.source][e.key],
			aggregations.Event{TS: e.ts, Seq: r.Offset, Value: e.amount})
		into.total++
	}
}

func newClient(t testing.TB, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(kafka.BaseOpts(brokers, "e2e-test", nil),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1_000_000))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// runWorker runs an in-process worker on its own store until stop is called.
func runWorker(t testing.TB, brokers []string, cfg *config.File, dir string) (stop func()) {
	t.Helper()
	_, stop = startWorker(t, worker.Options{Brokers: brokers, Config: cfg}, dir)
	return stop
}

// startWorker runs an in-process worker with options o on a store opened in
// dir (short group timeouts for tests) until stop or the end of the test.
func startWorker(t testing.TB, o worker.Options, dir string) (w *worker.Worker, stop func()) {
	t.Helper()
	st, err := state.Open(dir, state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	o.Store = st
	o.ExtraOpts = append(o.ExtraOpts, kgo.SessionTimeout(6*time.Second), kgo.RebalanceTimeout(10*time.Second))
	if w, err = worker.New(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
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
	st, err := state.Open(dir, state.Options{NoSync: true})
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

// mismatch describes one wrong value.
type mismatch struct {
	key, feature string
	got          *float64
	want         float64
	wantOK       bool
}

func (m mismatch) String() string {
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

// checkLookups asks the lookup service for every feature of every key and
// compares each value with the brute force over the produced events as of
// the answer's as_of time. It returns the mismatches and the number of
// values compared.
func checkLookups(t testing.TB, ls *lookupServer, cfg *config.File, p *produced, keys []string) ([]mismatch, int) {
	t.Helper()
	var names []string
	for _, f := range cfg.Features {
		names = append(names, f.ID) // name@version: versions side by side are checked each
	}
	var resp lookup.LookupResponse
	if code := postJSON(t, ls.url+"/v1/lookup", lookup.LookupRequest{Entity: "user", Keys: keys, Features: names}, &resp); code != http.StatusOK {
		return []mismatch{{key: "*", feature: fmt.Sprintf("HTTP %d", code)}}, 0
	}
	T := resp.AsOf.UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	var bad []mismatch
	n := 0
	for _, r := range resp.Results {
		for _, f := range cfg.Features {
			want, ok := aggtest.BruteForce(f.Aggregation, f.Window, p.events[f.Source][r.Key], T)
			got := r.Features[f.ID].Value
			n++
			if (got != nil) != ok || (ok && !aggtest.Close(*got, want)) {
				bad = append(bad, mismatch{key: r.Key, feature: f.ID, got: got, want: want, wantOK: ok})
			}
		}
	}
	return bad, n
}

// waitExact polls until every lookup value equals the brute force, failing
// with the first mismatches after timeout.
func waitExact(t testing.TB, ls *lookupServer, cfg *config.File, p *produced, keys []string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bad, n := checkLookups(t, ls, cfg, p, keys)
		if len(bad) == 0 && ls.ready() {
			return n
		}
		if time.Now().After(deadline) {
			sort.Slice(bad, func(i, j int) bool { return bad[i].key < bad[j].key })
			if len(bad) > 10 {
				bad = bad[:10]
			}
			t.Fatalf("after %s, values still differ from brute force, e.g.:\n%v", timeout, bad)
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
// to the test, and returns a client for which every topic it names exists.
func setup(t testing.TB, text string) (*kafkaCluster, *config.File, *kgo.Client) {
	t.Helper()
	k := startKafka(t)
	cfg := writeConfig(t, text)
	cl := newClient(t, k.Brokers)
	if err := kafka.EnsureTopics(context.Background(), cl, cfg); err != nil {
		t.Fatal(err)
	}
	return k, cfg, cl
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
		r, err := enc.Record(map[string]any{"user_id": user, "merchant_id": "m",
			"amount": float64(rng.IntN(100000)) / 100, "currency": "EUR", "ts": ts})
		if err != nil {
			b.Fatal(err)
		}
		if batch = append(batch, r); len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
}
