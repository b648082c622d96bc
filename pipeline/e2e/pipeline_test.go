package e2e

import (
	"context"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
	"github.com/featurepipe/featurepipe/pipeline/lookup"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

// TestPipelineMatchesBruteForce is the core end-to-end check: thousands of
// out-of-order events over 40 days for hundreds of users, two workers in one
// consumer group, one lookup service; every value of every feature of every
// user must equal the brute force over the produced events as of the
// lookup's time (exact for counts, 1e-9 relative for floats).
func TestPipelineMatchesBruteForce(t *testing.T) {
	k, cfg, cl := setup(t, featureFile)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	const users = 300
	p := newProduced()
	now := time.Now()

	// Half the events exist before any worker starts, half arrive while two
	// workers share the partitions.
	evs := genEvents(rng, 6000, users, 40*24*time.Hour, now)
	produceEvents(t, ctx, cl, cfg, evs[:3000], p)
	dir := t.TempDir()
	w1, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w1"))
	w2, _ := startWorker(t, worker.Options{Brokers: k.Brokers, Config: cfg}, filepath.Join(dir, "w2"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	for i := 3000; i < len(evs); i += 500 {
		produceEvents(t, ctx, cl, cfg, evs[i:i+500], p)
	}
	// A few hundred undecodable records must not disturb anything. A worker
	// given a partition it never had replays it from the start, dead letters
	// included: the junk comes once the workers share the partitions, so
	// that each junk record is dead-lettered once.
	waitShared(t, cfg, 30*time.Second, w1, w2)
	var junk []*kgo.Record
	for i := 0; i < 200; i++ {
		junk = append(junk, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte("user-001"), Value: []byte("not avro " + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, junk...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	n := waitExact(t, ls, cfg, p, allKeys(users), 90*time.Second)
	t.Logf("%d events, %d users: %d feature values equal brute force", p.total, users, n)

	// Every junk record is in the dead-letter topic with its reason, once.
	dead := readDeadLetters(t, k.Brokers, cfg.Kafka.DeadLetterTopic, 200, 30*time.Second)
	for _, r := range dead {
		if reason := header(r, worker.HeaderReason); reason != events.ReasonNotAvro {
			t.Fatalf("dead letter reason %q, want %q", reason, events.ReasonNotAvro)
		}
	}

	checkReadPaths(t, ls, cfg, p)
}

// checkReadPaths checks that the three read paths agree: GET /v1/features
// answers every feature of a user as the brute force does at its as_of, and
// Feast's /get-online-features answers, value for value, what POST
// /v1/lookup answers for the same features of a known and an unknown user,
// which equals the brute force too.
func checkReadPaths(t *testing.T, ls *lookupServer, cfg *config.File, p *produced) {
	t.Helper()
	var one lookup.LookupResponse
	resp, err := http.Get(ls.url + "/v1/features/user/user-001")
	if err != nil {
		t.Fatal(err)
	}
	decodeInto(t, resp, &one)
	if bad, n := compareAnswer(&one, []string{"user-001"}, cfg.Features, byName, p); len(bad) > 0 || n != len(cfg.Features) {
		t.Fatalf("GET /v1/features/user/user-001: %d of %d values compared, differing from brute force: %v", n, len(cfg.Features), bad)
	}

	keys, names := []string{"user-001", "nobody"}, []string{"txn_count_life", "txn_avg_30d", "txn_stddev_samp_life", "txn_first", "txn_distinct_30d", "txn_p95_7d"}
	feats := make([]*config.Feature, len(names))
	for i, name := range names {
		if feats[i], err = cfg.Feature(name); err != nil {
			t.Fatal(err)
		}
	}
	feast, post := feastAndLookup(t, ls, keys, names)
	if got := feast.Metadata.FeatureNames; len(got) != 1+len(names) || got[0] != "user_id" || got[1] != "txn_count_life" {
		t.Fatalf("feast feature names %v", got)
	}
	if v := one.Results[0].Features["txn_count_life"].Value; v == nil || feast.Results[1].Values[0] != *v {
		t.Fatalf("feast count %v differs from GET %v", feast.Results[1].Values[0], v)
	}
	if feast.Results[1].Statuses[1] != "NOT_FOUND" || feast.Results[2].Values[1] != nil {
		t.Fatalf("unknown user: statuses %v values %v", feast.Results[1].Statuses, feast.Results[2].Values)
	}
	if bad, n := compareAnswer(post, keys, feats, byName, p); len(bad) > 0 || n != len(keys)*len(feats) {
		t.Fatalf("POST /v1/lookup: %d of %d values compared, differing from brute force: %v", n, len(keys)*len(feats), bad)
	}
	for j, name := range names {
		col := feast.Results[j+1]
		if len(col.Values) != len(keys) {
			t.Fatalf("feast column %s holds %d values for %d keys", name, len(col.Values), len(keys))
		}
		for i, key := range keys {
			var want any // nil, as JSON null decodes
			if v := post.Results[i].Features[name].Value; v != nil {
				want = *v
			}
			if col.Values[i] != want {
				t.Fatalf("feast %s of %s is %v, POST /v1/lookup answers %v", name, key, col.Values[i], want)
			}
		}
	}
}

// feastAndLookup asks Feast's /get-online-features and POST /v1/lookup for
// names of keys at (nearly) the same moment: the Feast call is framed by two
// lookups, and retried until both lookups answer the same values (a window
// boundary passing between the calls would change them). It returns the
// Feast answer and the lookup answer.
func feastAndLookup(t *testing.T, ls *lookupServer, keys, names []string) (*lookup.FeastResponse, *lookup.LookupResponse) {
	t.Helper()
	req := lookup.LookupRequest{Entity: "user", Keys: keys, Features: names}
	post := func() *lookup.LookupResponse {
		var resp lookup.LookupResponse
		if code := postJSON(t, ls.url+"/v1/lookup", req, &resp); code != http.StatusOK {
			t.Fatalf("POST /v1/lookup: HTTP %d", code)
		}
		return &resp
	}
	for attempt := 1; ; attempt++ {
		before := post()
		var feast lookup.FeastResponse
		if code := postJSON(t, ls.url+"/get-online-features", map[string]any{
			"features": append([]string{"user_features:" + names[0]}, names[1:]...),
			"entities": map[string][]string{"user_id": keys},
		}, &feast); code != http.StatusOK {
			t.Fatalf("POST /get-online-features: HTTP %d", code)
		}
		after := post()
		if sameValues(before, after) {
			return &feast, before
		}
		if attempt == 5 {
			t.Fatalf("lookup values changed between every two calls of %d attempts", attempt)
		}
	}
}

// sameValues reports whether a and b hold the same keys, features and values.
func sameValues(a, b *lookup.LookupResponse) bool {
	if len(a.Results) != len(b.Results) {
		return false
	}
	for i, r := range a.Results {
		if r.Key != b.Results[i].Key || len(r.Features) != len(b.Results[i].Features) {
			return false
		}
		for name, v := range r.Features {
			w, ok := b.Results[i].Features[name]
			if !ok || (v.Value == nil) != (w.Value == nil) || (v.Value != nil && *v.Value != *w.Value) {
				return false
			}
		}
	}
	return true
}

// waitShared waits until every source partition of cfg is assigned and
// each of workers owns some.
func waitShared(t *testing.T, cfg *config.File, timeout time.Duration, workers ...*worker.Worker) {
	t.Helper()
	want := len(cfg.Topics()) * int(cfg.Kafka.Partitions)
	start := time.Now()
	for {
		total, each := 0, true
		for _, w := range workers {
			n := int(testutil.ToFloat64(w.Metrics().Assigned))
			total += n
			each = each && n > 0
		}
		if total == want && each {
			t.Logf("%d workers share the %d source partitions after %s", len(workers), want, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %s the workers own %d of %d source partitions (each some: %v)", timeout, total, want, each)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readDeadLetters reads the dead-letter topic from its start until it holds
// want records (failing after timeout), and requires it to hold exactly
// want: no more records polled, and no more ever written (end offsets).
func readDeadLetters(t *testing.T, brokers []string, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("dead-letter topic %s holds %d records after %s, want %d", topic, len(out), timeout, want)
		}
		out = append(out, f.Records()...)
	}
	if len(out) != want {
		t.Fatalf("dead-letter topic holds %d records, want %d", len(out), want)
	}
	// Polling stops at want records: duplicates after them would go
	// unseen, but not in the end offsets.
	if total := recordsWritten(t, cl, topic); total != int64(want) {
		t.Fatalf("dead-letter topic %s ends at offsets summing to %d, want %d: records were dead-lettered more than once", topic, total, want)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
