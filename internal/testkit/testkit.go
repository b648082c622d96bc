// Package testkit is what featurepipe's integration tests share: a broker to
// run against (Apache Kafka when KAFKA_BROKERS is set, else a fresh embedded
// kfake broker) and feature files written with topic names unique to each
// test, so that runs against one shared Apache Kafka never see each other's
// data. Test code only.
package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
