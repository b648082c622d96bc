package main

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lineage"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// lineage and describe refuse bad usage with exit 2; plan exits 1 on every
// error, bad flags included, because its exit 2 means "breaks dependents".
func TestLineagePlanDescribeUsage(t *testing.T) {
	for _, cmd := range []string{"lineage", "plan", "describe"} {
		code, _, stderr := execCLI(cmd, "--help")
		if code != 0 || !strings.Contains(stderr, "Usage: featurepipe "+cmd) || !strings.Contains(stderr, "--brokers") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"lineage", "--brokers", "127.0.0.1:1"}, 2, "a NODE is required"},
		{[]string{"lineage", "feature:a", "--brokers", "127.0.0.1:1"}, 2, "a feature is named with its version, as feature:a@1"},
		{[]string{"lineage", "table:a", "--brokers", "127.0.0.1:1"}, 2, "want KIND:NAME with KIND one of topic, source, feature"},
		{[]string{"lineage", "service:s", "x", "--brokers", "127.0.0.1:1"}, 2, "unexpected arguments: x"},
		{[]string{"lineage", "service:s", "--upstream", "--downstream", "--brokers", "127.0.0.1:1"}, 2, "exclude each other"},
		{[]string{"lineage", "--json", "service:s", "--dot", "--brokers", "127.0.0.1:1"}, 2, "--json and --dot exclude each other"},
		{[]string{"lineage", "service:s"}, 2, "--brokers is required"},
		{[]string{"describe", "model:m", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"plan", "--brokers", "127.0.0.1:1"}, 1, "--config is required"},
		{[]string{"plan", "--bogus"}, 1, "flag provided but not defined: -bogus"},
		{[]string{"plan", "--brokers", "127.0.0.1:1", "--config", "no-such-file.yaml"}, 1, "no-such-file.yaml"},
	} {
		code, _, stderr := execCLI(tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d\n%s\nwant exit %d saying %q", tc.args, code, stderr, tc.code, tc.msg)
		}
	}
}

// lookupLogConsumers counts keys per feature version and consumer from the
// lookup log: a record without a consumer counts as anonymous, a lookup
// older than 7 days counts only in everything retained, and an undecodable
// record is skipped.
func TestLookupLogConsumers(t *testing.T) {
	k, cfg, cl := testkit.Setup(t, testkit.KafkaSection(2)+`entities:
  - {name: user, key: user_id}
sources:
  - {name: transactions, topic: tx-{{ID}}, schema: transaction.avsc, event_time: ts}
features:
  - {name: spend, version: 1, entity: user, source: transactions, aggregation: sum, field: amount, window: 7d, owner: t, description: d}
`, testkit.SetupOptions{})
	now := time.Now()
	rec := func(consumer string, at time.Time, ids ...string) *kgo.Record {
		e := lookuplog.Entry{Entity: "user", Key: "u", At: at.UnixMilli(), Consumer: consumer, Features: map[string]*float64{}}
		for _, id := range ids {
			e.Features[id] = nil
		}
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: cfg.Kafka.LookupLogTopic, Key: []byte("u"), Value: b, Timestamp: at}
	}
	recs := []*kgo.Record{
		rec("fraud-api", now, "spend@1", "count@1"),
		rec("fraud-api", now, "spend@1"),
		rec("", now, "spend@1"),
		rec("old-job", now.Add(-8*24*time.Hour), "spend@1"),
		{Topic: cfg.Kafka.LookupLogTopic, Value: []byte("not json")},
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s := &catalogSetup{conn: kafka.ConnOf(k.Brokers, cfg), cfg: cfg}
	got, err := lookupLogConsumers(context.Background(), s, true)
	if err != nil {
		t.Fatal(err)
	}
	want := lineage.Consumers{"spend@1": {"fraud-api": 2, lineage.Anonymous: 1}, "count@1": {"fraud-api": 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("last 7 days: %v, want %v", got, want)
	}
	all, err := lookupLogConsumers(context.Background(), s, false)
	if err != nil {
		t.Fatal(err)
	}
	if all["spend@1"]["old-job"] != 1 {
		t.Errorf("everything retained: %v, want old-job too", all)
	}
}
