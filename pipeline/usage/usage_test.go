package usage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// entries of one request: one per key, each naming the features.
func request(consumer, service string, ago time.Duration, keys []string, features ...string) []*lookuplog.Entry {
	var out []*lookuplog.Entry
	for _, k := range keys {
		fs := map[string]*float64{}
		for _, f := range features {
			fs[f] = nil
		}
		out = append(out, &lookuplog.Entry{Entity: "user", Key: k, At: now.Add(-ago).UnixMilli(),
			Consumer: consumer, Service: service, Features: fs})
	}
	return out
}

func aggregate(reqs ...[]*lookuplog.Entry) map[string]*Stats {
	a := NewAggregator(now)
	for _, r := range reqs {
		for _, e := range r {
			a.Add(e)
		}
	}
	return a.Result()
}

func TestWindows(t *testing.T) {
	two := []string{"u1", "u2"}
	stats := aggregate(
		request("fraud-api", "fraud_scoring", 10*time.Minute, two, "a@1", "b@1"), // 1h, 24h, 7d
		request("fraud-api", "", 3*time.Hour, two, "a@1"),                        // 24h, 7d
		request("", "", 2*Day, []string{"u3"}, "a@1"),                            // 7d, anonymous
		request("batch", "", 10*Day, two, "a@1"),                                 // older than 7d: last used only
		request("fraud-api", "", -time.Minute, []string{"u1"}, "b@1"),            // clock skew: counts as now
	)
	a := stats["a@1"]
	for _, tc := range []struct {
		name string
		got  Counts
		want Counts
	}{
		{"a 1h", a.Windows.Hour, Counts{Lookups: 1, Keys: 2}},
		{"a 24h", a.Windows.Day, Counts{Lookups: 2, Keys: 4}},
		{"a 7d", a.Windows.Week, Counts{Lookups: 3, Keys: 5}},
		{"b 1h", stats["b@1"].Windows.Hour, Counts{Lookups: 2, Keys: 3}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
	if want := now.Add(-10 * time.Minute); !a.LastUsed.Equal(want) {
		t.Errorf("a last used %v, want %v", a.LastUsed, want)
	}
	// Consumers, most keys this week first; batch read it only 10 days ago.
	got := ""
	for _, c := range a.Consumers {
		got += fmt.Sprintf("%s:%d/%d ", c.Name, c.Windows.Week.Lookups, c.Windows.Week.Keys)
	}
	if want := "fraud-api:2/4 anonymous:1/1 batch:0/0 "; got != want {
		t.Errorf("consumers of a: %q, want %q", got, want)
	}
	if len(a.Services) != 1 || a.Services[0].Name != "fraud_scoring" || a.Services[0].Windows.Week != (Counts{1, 2}) {
		t.Errorf("services of a: %+v", a.Services)
	}
	if rc := RecentConsumers(stats); fmt.Sprint(rc["a@1"]) != "map[anonymous:1 fraud-api:4]" || fmt.Sprint(rc["b@1"]) != "map[fraud-api:3]" {
		t.Errorf("RecentConsumers: %v", rc)
	}
}

// A request is one lookup however many keys it served; two requests of
// different consumers at the same millisecond are two.
func TestLookupsCountRequests(t *testing.T) {
	// With request ids (every replica writes them): two requests of one
	// consumer in the same millisecond are two.
	withID := func(id string, r []*lookuplog.Entry) []*lookuplog.Entry {
		for _, e := range r {
			e.Request = id
		}
		return r
	}
	byID := aggregate(
		withID("r1-1", request("a", "", time.Minute, []string{"k1", "k2"}, "f@1")),
		withID("r1-2", request("a", "", time.Minute, []string{"k1"}, "f@1")),
	)
	if got := byID["f@1"].Windows.Hour; got != (Counts{Lookups: 2, Keys: 3}) {
		t.Fatalf("with ids: %+v, want 2 lookups of 3 keys", got)
	}
	// Without ids (older replicas):
	stats := aggregate(
		request("a", "", time.Minute, []string{"k1", "k2", "k3"}, "f@1"),
		request("b", "", time.Minute, []string{"k1"}, "f@1"),
		request("a", "svc", time.Minute, []string{"k1"}, "f@1"),
	)
	if got := stats["f@1"].Windows.Hour; got != (Counts{Lookups: 3, Keys: 5}) {
		t.Fatalf("%+v, want 3 lookups of 5 keys", got)
	}
}

func TestUnused(t *testing.T) {
	stats := aggregate(
		request("a", "", 29*Day, []string{"k"}, "recent@1"),
		request("a", "", 31*Day, []string{"k"}, "old@1"),
	)
	old := now.Add(-90 * Day)
	for _, tc := range []struct {
		name  string
		s     *Stats
		since time.Time
		want  bool
	}{
		{"read 29 days ago is used", stats["recent@1"], old, false},
		{"last read 31 days ago is unused", stats["old@1"], old, true},
		{"never read, registered 90 days ago, is unused", nil, old, true},
		{"never read, registration unknown, is unused", nil, time.Time{}, true},
		{"never read but registered 10 days ago is not yet unused", nil, now.Add(-10 * Day), false},
	} {
		if got := tc.s.Unused(tc.since, now); got != tc.want {
			t.Errorf("%s: Unused = %v", tc.name, got)
		}
	}
}

// Read reads the topic the lookup service writes, through the codec, and
// skips a record it cannot decode; a missing topic is no usage.
func TestReadFromTheLookupLog(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := fmt.Sprintf("usage-test-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if s, err := Read(ctx, kafka.Conn{Brokers: k.Brokers}, topic, now, nil); err != nil || len(s) != 0 {
		t.Fatalf("missing topic: %v, %v", s, err)
	}
	cl, err := kafka.NewClient(kafka.Conn{Brokers: k.Brokers}, "usage-test", nil, kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// One record of an older replica (one entry, keyed), one of today's
	// (several entries, one per line; an unreadable one between them is
	// skipped), and an unreadable record.
	var lines [][]byte
	for _, e := range request("fraud-api", "", time.Minute, []string{"u1", "u2", "u3"}, "a@1") {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, b)
	}
	recs := []*kgo.Record{
		{Topic: topic, Key: []byte("u1"), Value: lines[0]},
		{Topic: topic, Value: bytes.Join([][]byte{lines[1], []byte("not json"), lines[2]}, []byte("\n"))},
		{Topic: topic, Key: []byte("x"), Value: []byte("not json")},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s, err := Read(ctx, kafka.Conn{Brokers: k.Brokers}, topic, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 || s["a@1"].Windows.Hour != (Counts{Lookups: 1, Keys: 3}) || s["a@1"].Consumers[0].Name != "fraud-api" {
		t.Fatalf("usage %+v", s["a@1"])
	}
}
