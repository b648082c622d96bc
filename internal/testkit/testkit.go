// Package testkit is what featurepipe's integration tests share: a broker to
// run against (Apache Kafka when KAFKA_BROKERS is set, else a fresh embedded
// kfake broker) and feature files written with topic names unique to each
// test, so that runs against one shared Apache Kafka never see each other's
// data. Test code only.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/broker"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/schemas"
)

// Kafka is the broker a test runs against.
type Kafka struct {
	Brokers []string
	Real    bool           // Apache Kafka from KAFKA_BROKERS
	Embed   *broker.Broker // nil for Apache Kafka
}

// StartKafka returns Apache Kafka when KAFKA_BROKERS is set, else a fresh
// embedded broker closed at the end of the test.
func StartKafka(t testing.TB) *Kafka {
	t.Helper()
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		brokers, err := kafka.ParseBrokers(env)
		if err != nil {
			t.Fatal(err)
		}
		return &Kafka{Brokers: brokers, Real: true}
	}
	b, err := broker.Start(broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &Kafka{Brokers: []string{b.Addr()}, Embed: b}
}

// KFake starts a bare kfake cluster (one broker) with the topics, each of
// partitions partitions, for tests that need its control functions (to
// observe or fail requests), whatever KAFKA_BROKERS says. It returns the
// cluster and a client that produces each record to the partition it names
// (ManualPartitioner); both are closed when the test ends.
func KFake(t testing.TB, partitions int32, topics ...string) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// WriteConfig writes a feature file and the demo schemas it may name
// (transaction.avsc, login.avsc) into a temporary directory and loads it.
// Every "{{ID}}" in text becomes an id unique to the test; extra files
// (more schemas) are written beside it.
func WriteConfig(t testing.TB, text string, extra map[string]string) *config.File {
	t.Helper()
	dir := t.TempDir()
	id := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name())), time.Now().UnixNano()%1e9)
	files := map[string]string{}
	for _, name := range []string{"transaction.avsc", "login.avsc"} {
		b, err := schemas.Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	for name, content := range extra {
		files[name] = content
	}
	files["features.yaml"] = strings.ReplaceAll(text, "{{ID}}", id)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "features.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// KafkaSection is the kafka section of a feature file with the given number
// of partitions and names unique to the test: the feature log is
// features-{{ID}}, the dead-letter topic dlq-{{ID}}, the lookup log
// lookups-{{ID}}, the registry registry-{{ID}} and the consumer group
// workers-{{ID}} (WriteConfig replaces {{ID}}). It ends with a newline, so
// the entities section can follow directly.
func KafkaSection(partitions int) string {
	return fmt.Sprintf(`kafka:
  feature_log_topic: features-{{ID}}
  dead_letter_topic: dlq-{{ID}}
  lookup_log_topic: lookups-{{ID}}
  registry_topic: registry-{{ID}}
  group: workers-{{ID}}
  partitions: %d
`, partitions)
}

// UserTransactions is what most test feature files have after their kafka
// section (KafkaSection): the entity user (key user_id) and the source
// transactions (transaction.avsc, event time ts). More sources may follow,
// then "features:".
const UserTransactions = `entities:
  - name: user
    key: user_id
sources:
  - name: transactions
    topic: transactions-{{ID}}
    schema: transaction.avsc
    event_time: ts
`

// SetupOptions tunes Setup; the zero value suits most tests.
type SetupOptions struct {
	// Files are written beside the feature file (e.g. more schemas).
	Files map[string]string
	// ClientOpts are appended to the client's options (after the defaults,
	// so they win).
	ClientOpts []kgo.Opt
	// SourceTopicConfigs maps a source name to the topic configs its topic
	// is created with (e.g. max.message.bytes), before EnsureTopics creates
	// every other topic with the defaults. Default: none.
	SourceTopicConfigs map[string]map[string]*string
}

// Setup starts a broker (StartKafka), writes and loads the feature file text
// (WriteConfig) and returns a client for which every topic the file names
// exists (kafka.EnsureTopics). The client, closed when the test ends, has
// kafka.BaseOpts, a 1ms producer linger and room for 1,000,000 buffered
// records (ProduceSync of large batches never blocks on the buffer), then
// o.ClientOpts.
func Setup(t testing.TB, text string, o SetupOptions) (*Kafka, *config.File, *kgo.Client) {
	t.Helper()
	k := StartKafka(t)
	cfg := WriteConfig(t, text, o.Files)
	opts := append([]kgo.Opt{kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1_000_000)}, o.ClientOpts...)
	cl, err := kafka.NewClient(kafka.Conn{Brokers: k.Brokers}, "featurepipe-test", nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx := context.Background()
	if err := createSourceTopics(ctx, cl, cfg, o.SourceTopicConfigs); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		t.Fatal(err)
	}
	return k, cfg, cl
}

// createSourceTopics creates the topic of each source named in configs with
// those configs and cfg's partitions and replication factor.
func createSourceTopics(ctx context.Context, cl *kgo.Client, cfg *config.File, configs map[string]map[string]*string) error {
	adm := kadm.NewClient(cl)
	for name, c := range configs {
		src, ok := cfg.Source(name)
		if !ok {
			return fmt.Errorf("topic configs for source %q, which the feature file does not define", name)
		}
		if _, err := adm.CreateTopic(ctx, cfg.Kafka.Partitions, cfg.Kafka.ReplicationFactor, c, src.Topic); err != nil {
			return fmt.Errorf("create topic %s of source %s: %w", src.Topic, name, err)
		}
	}
	return nil
}

// Event returns the native record (ready for produce.Encoder.Record or
// Schema.Encode) of one event of the demo schemas: for source "logins" a
// successful login from DE (amount unused), for any other source a
// transaction of amount EUR at merchant m1. ts is the event time in epoch
// milliseconds.
func Event(source, key string, ts int64, amount float64) map[string]any {
	if source == "logins" {
		return map[string]any{"user_id": key, "ts": ts, "country": "DE", "success": true}
	}
	return map[string]any{"user_id": key, "ts": ts, "merchant_id": "m1", "amount": amount, "currency": "EUR"}
}

// WaitStable waits (up to 30 s) until topic's last stable offsets reach its
// high watermarks. Apache Kafka writes a transaction's commit or abort
// markers after EndTransaction returns (the coordinator completes it
// asynchronously), so until then the transaction holds the last stable
// offset back and a read-committed read to the end stops before it; kfake
// writes them at once.
func WaitStable(t testing.TB, cl *kgo.Client, topic string) {
	t.Helper()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		stable, err1 := adm.ListCommittedOffsets(ctx, topic)
		high, err2 := adm.ListEndOffsets(ctx, topic)
		err := errors.Join(err1, err2)
		if err == nil {
			err = errors.Join(stable.Error(), high.Error())
		}
		if err == nil {
			settled := true
			high.Each(func(o kadm.ListedOffset) {
				if s, ok := stable.Lookup(topic, o.Partition); !ok || s.Offset < o.Offset {
					settled = false
				}
			})
			if settled {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the last stable offsets did not reach the high watermarks in 30s (last error: %v)", topic, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
