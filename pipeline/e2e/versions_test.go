package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/registry"
	"github.com/featurepipe/featurepipe/pipeline/worker"
)

var versionsV1 = testkit.KafkaSection(3) + `entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: transactions-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
  - {name: txn_count_life, version: 1, entity: user, source: transactions, aggregation: count, window: lifetime, owner: t, description: d}
`

// versionsV2 adds spend@2 with another window beside spend@1.
const versionsV2Feature = `  - {name: spend, version: 2, entity: user, source: transactions, aggregation: sum, field: amount, window: 3d, hop: 1h, owner: t, description: d}
`

// transactionsOnly keeps the generated events but sends them all to the
// transactions source.
func transactionsOnly(evs []event) []event {
	for i := range evs {
		evs[i].source = "transactions"
	}
	return evs
}

// sameTopics rewrites a config text to use the topics of an existing config.
func sameTopics(text string, cfg *config.File) string {
	id := strings.TrimPrefix(cfg.Kafka.FeatureLogTopic, "features-")
	return strings.ReplaceAll(text, "{{ID}}", id)
}

// TestNewVersionIsBootstrappedSideBySide runs spend@1 over a stream, then
// adds spend@2 (another window) to the feature file: the restarted worker
// bootstraps spend@2 from the topic's history while spend@1 keeps being
// computed, and both end exact. The registry shows spend@2 warming up, then
// ready; changing spend@1's definition without a new version is refused.
func TestNewVersionIsBootstrappedSideBySide(t *testing.T) {
	k, cfg1, cl := setup(t, versionsV1)
	ctx := context.Background()
	dir := t.TempDir()
	const users = 100
	rng := rand.New(rand.NewPCG(41, 42))
	p := newProduced()
	produceEvents(t, ctx, cl, cfg1, transactionsOnly(genEvents(rng, 20000, users, 10*24*time.Hour, time.Now())), p)
	stop1 := runWorker(t, k.Brokers, cfg1, filepath.Join(dir, "worker"))
	ls1, stopLookup1 := runLookup(t, k.Brokers, cfg1, filepath.Join(dir, "view1"))
	waitExact(t, ls1, cfg1, p, allKeys(users), time.Minute)
	stop1()
	stopLookup1()

	// A changed definition under the same version is refused, naming the difference.
	changed := strings.Replace(versionsV1, "window: 7d", "window: 14d", 1)
	cfgBad := writeConfig(t, sameTopics(changed, cfg1))
	bad := launchWorker(t, worker.Options{Brokers: k.Brokers, Config: cfgBad}, filepath.Join(dir, "other"))
	select {
	case err := <-bad.done:
		if !errors.Is(err, registry.ErrDefinitionChanged) || !strings.Contains(err.Error(), "window_size_ms") ||
			!strings.Contains(err.Error(), "spend@2") {
			t.Fatalf("want a refusal naming window_size_ms and suggesting spend@2, got: %v", err)
		}
		t.Logf("changed definition refused:\n%v", err)
	case <-time.After(30 * time.Second):
		bad.stop()
		t.Fatal("a worker with a changed definition under the same version kept running")
	}
	bad.stop()

	// spend@2 beside spend@1.
	v2 := strings.Replace(versionsV1, "features:\n", "features:\n"+versionsV2Feature, 1)
	cfg2 := writeConfig(t, sameTopics(v2, cfg1))
	ls2, _ := runLookup(t, k.Brokers, cfg2, filepath.Join(dir, "view2"))
	runWorker(t, k.Brokers, cfg2, filepath.Join(dir, "worker"))
	// More events stream in while spend@2 bootstraps.
	for i := 0; i < 5; i++ {
		produceEvents(t, ctx, cl, cfg2, transactionsOnly(genEvents(rng, 2000, users, 10*24*time.Hour, time.Now())), p)
	}
	n := waitExact(t, ls2, cfg2, p, allKeys(users), 2*time.Minute)
	// Every partition of spend@2 ends ready in the registry.
	deadline := time.Now().Add(30 * time.Second)
	for {
		view, err := registry.Load(ctx, kafka.Conn{Brokers: k.Brokers}, cfg2.Kafka.RegistryTopic, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := view.Statuses("spend@2")
		if view.Ready("spend@2") && len(st) == int(cfg2.Kafka.Partitions) {
			if _, ok := view.Definition("spend@2"); !ok {
				t.Fatal("spend@2 is not registered")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spend@2 statuses after bootstrap: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Before it was ready, every partition announced spend@2 as warming up
	// (the registry's history, not yet compacted, shows it).
	warming := registryHistory(t, k.Brokers, cfg2.Kafka.RegistryTopic, "spend@2", registry.StateWarmingUp)
	if warming != int(cfg2.Kafka.Partitions) {
		t.Fatalf("%d partitions announced spend@2 warming up, want %d", warming, cfg2.Kafka.Partitions)
	}
	t.Logf("spend@2 bootstrapped beside spend@1 over %d events (warming up in %d partitions, then ready); %d values (both versions) equal brute force", p.total, warming, n)
}

// registryHistory counts the distinct partitions for which the registry
// topic holds a status record of feature in state.
func registryHistory(t *testing.T, brokers []string, topic, feature, state string) int {
	t.Helper()
	ends, err := func() (map[int32]int64, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		return kafka.EndOffsets(context.Background(), cl, topic)
	}()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for {
		done := true
		for _, end := range ends {
			done = done && end == 0
		}
		if done {
			return len(seen)
		}
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if rec, err := registry.DecodeRecord(r.Key, r.Value); err == nil && rec.Status != nil &&
				rec.Status.Feature == feature && rec.Status.State == state {
				seen[rec.Status.Topic+"/"+strconv.Itoa(int(rec.Status.Partition))] = true
			}
			if r.Offset+1 >= ends[r.Partition] {
				ends[r.Partition] = 0
			}
		})
	}
}
