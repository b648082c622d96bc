package registry

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

const raceFeatures = `kafka:
  feature_log_topic: features-{{ID}}
  registry_topic: registry-{{ID}}
entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: %s, field: amount, window: 7d, owner: t, description: d}
`

// raceConfigs returns two feature files with the same registry topic and
// the same version spend@1, defined differently (sum vs max).
func raceConfigs(t *testing.T) (*config.File, *config.File) {
	t.Helper()
	a := testkit.WriteConfig(t, strings.Replace(raceFeatures, "%s", "sum", 1), nil)
	b := *a
	f := *a.Features[0]
	f.Aggregation = aggregations.Max
	f.Hash = strings.Repeat("b", 64)
	b.Features = []*config.Feature{&f}
	if a.Features[0].Hash == f.Hash {
		t.Fatal("the two definitions must differ")
	}
	return a, &b
}

// Two registrants that both loaded an empty registry (check) and then
// register different definitions under the same version (act): exactly one
// succeeds, the loser gets ErrDefinitionChanged, and the registry read
// afterwards holds the winner's definition, also as the key's last record
// (what compaction keeps).
func TestConcurrentRegistrationsOneWins(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		name := "one after the other with stale views"
		if concurrent {
			name = "at the same time"
		}
		t.Run(name, func(t *testing.T) {
			k := testkit.StartKafka(t)
			a, b := raceConfigs(t)
			topic := a.Kafka.RegistryTopic
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			admin, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if err := kafka.EnsureTopics(ctx, admin, a); err != nil {
				t.Fatal(err)
			}
			// Both check first: the registry is empty for both.
			va, err := Load(ctx, kafka.Conn{Brokers: k.Brokers}, topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			vb, err := Load(ctx, kafka.Conn{Brokers: k.Brokers}, topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			errs := make([]error, 2)
			register := func(i int, cfg *config.File, v *View) {
				cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
				if err != nil {
					errs[i] = err
					return
				}
				defer cl.Close()
				errs[i] = Register(ctx, cl, topic, cfg, v, []string{"a", "b"}[i])
			}
			if concurrent {
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); register(0, a, va) }()
				go func() { defer wg.Done(); register(1, b, vb) }()
				wg.Wait()
			} else {
				register(0, a, va)
				register(1, b, vb)
			}
			var winner, loser *config.File
			switch {
			case errs[0] == nil && errs[1] != nil:
				winner, loser = a, b
			case errs[1] == nil && errs[0] != nil:
				winner, loser = b, a
			default:
				t.Fatalf("want exactly one registration to succeed; errors: %v, %v", errs[0], errs[1])
			}
			lost := errs[0]
			if lost == nil {
				lost = errs[1]
			}
			if !errors.Is(lost, ErrDefinitionChanged) {
				t.Fatalf("the loser's error %v is not ErrDefinitionChanged", lost)
			}
			if !concurrent && winner != a {
				t.Fatal("one after the other: the first registrant must win")
			}
			after, err := Load(ctx, kafka.Conn{Brokers: k.Brokers}, topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(winner, after); err != nil {
				t.Fatalf("the registry does not hold the winner's definition: %v", err)
			}
			if err := Check(loser, after); !errors.Is(err, ErrDefinitionChanged) {
				t.Fatalf("the loser's definition passes Check: %v", err)
			}
			// The last def record of the key is the winner's: compaction
			// keeps the winner.
			var last Definition
			err = kafka.ReadToEnd(ctx, admin, topic, func(r *kgo.Record) error {
				if string(r.Key) == "def/spend@1" {
					return json.Unmarshal(r.Value, &last)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if last.Hash != winner.Features[0].Hash {
				t.Fatalf("the key's last record has hash %s, want the winner's", last.Hash)
			}
		})
	}
}

// Load ends on a registry whose last records are a transaction's: it used
// to wait for a record at end-1, which a commit or abort marker never is,
// and it applied aborted records.
func TestLoadEndsOnTransactionMarkersAndSkipsAborted(t *testing.T) {
	k := testkit.StartKafka(t)
	a, b := raceConfigs(t)
	topic := a.Kafka.RegistryTopic
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, a); err != nil {
		t.Fatal(err)
	}
	produceTxn := func(cfg *config.File, commit bool) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.TransactionalID(topic+"-txn"))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		f := cfg.Features[0]
		rec, err := DefinitionRecord(topic, Definition{Feature: f.ID, Hash: f.Hash, Fields: f.Definition()})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	produceTxn(b, false) // aborted: must not count
	produceTxn(a, true)  // committed: its marker is the last offset
	// Apache Kafka completes the transaction after EndTransaction returns:
	// wait until the commit is visible to a read-committed reader at all.
	testkit.WaitStable(t, admin, topic)
	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	defer lcancel()
	v, err := Load(lctx, kafka.Conn{Brokers: k.Brokers}, topic, nil)
	if err != nil {
		t.Fatalf("Load did not end on a registry whose last offset is a commit marker: %v", err)
	}
	if d, ok := v.Definition("spend@1"); !ok || d.Hash != a.Features[0].Hash {
		t.Fatalf("definition %+v (found %v); want the committed one, not the aborted one", d, ok)
	}
}
