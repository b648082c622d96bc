package worker

import (
	"hash/crc32"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/events"
)

// The check counts exactly the keyed records outside their murmur2
// partition (what franz-go's default partitioner and Kafka's Java client
// choose), never keyless ones, and nothing when the partition count is
// unknown.
func TestCanonicalCountsRecordsOutsideTheirMurmur2Partition(t *testing.T) {
	const n = 6
	murmur := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	c := newCanonical(n)
	want := int64(0)
	for i := range 500 {
		key := []byte{byte(i), byte(i >> 8), 'k'}
		home := int32(murmur.Partition(&kgo.Record{Key: key}, n))
		crc := int32(crc32.ChecksumIEEE(key) % n)
		c.observe(&kgo.Record{Key: key, Partition: home})
		c.observe(&kgo.Record{Key: key, Partition: crc})
		if crc != home {
			want++
		}
		c.observe(&kgo.Record{Key: nil, Partition: (home + 1) % n}) // no key: no canonical partition
	}
	if c.staged != want || want == 0 {
		t.Fatalf("counted %d off-canonical records, want %d", c.staged, want)
	}
	unknown := newCanonical(0)
	unknown.observe(&kgo.Record{Key: []byte("k"), Partition: 99})
	if unknown.staged != 0 {
		t.Fatal("a partition of unknown partition count counted a record")
	}
	r := &kgo.Record{Key: []byte("user-1"), Partition: 1}
	if testing.AllocsPerRun(100, func() { c.observe(r) }) != 0 {
		t.Fatal("observe allocates")
	}
}

// Committed off-canonical records go to the metric each time, and to the
// log at most once a minute per source, with the count since the last line.
func TestOffCanonicalLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	w := &Worker{log: zap.New(core), offCanonLogs: map[string]*offCanonicalLog{}}
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	ps := &partState{tp: topicPartition{"tx", 2}, plan: &events.Plan{Source: &config.Source{Name: "transactions"}}}
	for _, n := range []int64{3, 4, 0, 5} {
		ps.canon.staged = n
		w.commitOffCanonical(ps, counter)
		if ps.canon.staged != 0 {
			t.Fatal("the staged count was not reset at commit")
		}
	}
	if got := testutil.ToFloat64(counter); got != 12 {
		t.Fatalf("metric %v, want 12", got)
	}
	if logs.Len() != 1 {
		t.Fatalf("%d log lines within a minute, want 1", logs.Len())
	}
	if f := logs.All()[0].ContextMap(); f["records_since_last_line"] != int64(3) || f["source"] != "transactions" {
		t.Fatalf("first line fields %v", f)
	}
	// A minute later the next line carries what accumulated meanwhile.
	w.offCanonLogs["transactions"].last = w.offCanonLogs["transactions"].last.Add(-offCanonicalLogEvery)
	ps.canon.staged = 1
	w.commitOffCanonical(ps, counter)
	if logs.Len() != 2 {
		t.Fatalf("%d log lines after a minute, want 2", logs.Len())
	}
	if f := logs.All()[1].ContextMap(); f["records_since_last_line"] != int64(10) || f["records_total"] != int64(13) {
		t.Fatalf("second line fields %v", f)
	}
}

// BenchmarkCanonicalObserve is the per-record cost the off-canonical count
// adds to the apply path (a 9-byte key, like "user-0042").
func BenchmarkCanonicalObserve(b *testing.B) {
	c := newCanonical(12)
	r := &kgo.Record{Key: []byte("user-0042"), Partition: 3}
	b.ReportAllocs()
	for b.Loop() {
		c.observe(r)
	}
}
