package e2e

import (
	"context"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w1"))
	runWorker(t, k.Brokers, cfg, filepath.Join(dir, "w2"))
	ls, _ := runLookup(t, k.Brokers, cfg, filepath.Join(dir, "view"))
	for i := 3000; i < len(evs); i += 500 {
		produceEvents(t, ctx, cl, cfg, evs[i:i+500], p)
	}
	// A few hundred undecodable records must not disturb anything.
	var junk []*kgo.Record
	for i := 0; i < 200; i++ {
		junk = append(junk, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte("user-001"), Value: []byte("not avro " + strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, junk...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	n := waitExact(t, ls, cfg, p, allKeys(users), 90*time.Second)
	t.Logf("%d events, %d users: %d feature values equal brute force", p.total, users, n)

	// Every junk record is in the dead-letter topic with its reason.
	dead := readDeadLetters(t, k.Brokers, cfg.Kafka.DeadLetterTopic, 200, 30*time.Second)
	for _, r := range dead {
		if reason := header(r, worker.HeaderReason); reason != events.ReasonNotAvro {
			t.Fatalf("dead letter reason %q, want %q", reason, events.ReasonNotAvro)
		}
	}

	// The three read paths agree: /v1/lookup, GET /v1/features and Feast.
	var one lookup.LookupResponse
	resp, err := http.Get(ls.url + "/v1/features/user/user-001")
	if err != nil {
		t.Fatal(err)
	}
	decodeInto(t, resp, &one)
	var feast lookup.FeastResponse
	postJSON(t, ls.url+"/get-online-features", map[string]any{
		"features": []string{"user_features:txn_count_life", "txn_avg_30d"},
		"entities": map[string][]string{"user_id": {"user-001", "nobody"}},
	}, &feast)
	if got := feast.Metadata.FeatureNames; len(got) != 3 || got[0] != "user_id" || got[1] != "txn_count_life" {
		t.Fatalf("feast feature names %v", got)
	}
	if v := one.Results[0].Features["txn_count_life"].Value; v == nil || feast.Results[1].Values[0] != *v {
		t.Fatalf("feast count %v differs from GET %v", feast.Results[1].Values[0], v)
	}
	if feast.Results[1].Statuses[1] != "NOT_FOUND" || feast.Results[2].Values[1] != nil {
		t.Fatalf("unknown user: statuses %v values %v", feast.Results[1].Statuses, feast.Results[2].Values)
	}
}

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
