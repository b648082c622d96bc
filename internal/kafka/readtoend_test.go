package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

func newTopic(t *testing.T, k *testkit.Kafka, partitions int32, configs map[string]*string) (string, *kgo.Client) {
	t.Helper()
	topic := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name())), time.Now().UnixNano()%1e9)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	return topic, cl
}

// txn produces recs in one transaction and commits or aborts it.
func txn(t *testing.T, k *testkit.Kafka, id string, commit bool, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitStable(t, cl, recs[0].Topic)
}

func rec(topic string, p int32, key, value string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(key)}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// readAll reads topic to its end within a bound and returns "key=value@offset"
// per partition.
func readAll(t *testing.T, cl *kgo.Client, topic string) (map[int32][]string, map[int32][]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[int32][]string{}
	offs := map[int32][]int64{}
	err := kafka.ReadToEnd(ctx, cl, topic, func(r *kgo.Record) error {
		got[r.Partition] = append(got[r.Partition], string(r.Key)+"="+string(r.Value))
		offs[r.Partition] = append(offs[r.Partition], r.Offset)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadToEnd: %v (a read that does not end here is the bug this helper fixes)", err)
	}
	return got, offs
}

// Aborted transactions are skipped and transaction markers end a read: a
// partition whose last offsets are a commit or an abort marker (no data
// record at end-1) still ends. On kfake and on Apache Kafka.
func TestReadToEndTransactions(t *testing.T) {
	k := testkit.StartKafka(t)
	topic, cl := newTopic(t, k, 3, nil)
	ctx := context.Background()
	id := topic + "-txn"
	// p0: plain, committed, aborted (the abort marker is last).
	if err := cl.ProduceSync(ctx, rec(topic, 0, "a", "1")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txn(t, k, id, true, rec(topic, 0, "b", "2"), rec(topic, 0, "c", "3"))
	txn(t, k, id, false, rec(topic, 0, "x", "aborted"), rec(topic, 0, "y", "aborted"))
	// p1: only a committed transaction (its commit marker is last).
	txn(t, k, id, true, rec(topic, 1, "d", "4"))
	// p2: only an aborted transaction.
	txn(t, k, id, false, rec(topic, 2, "z", "aborted"))
	got, _ := readAll(t, cl, topic)
	want := map[int32][]string{0: {"a=1", "b=2", "c=3"}, 1: {"d=4"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	// What is produced after the end offsets were listed is not read.
	rs, err := kafka.ToEnd(ctx, cl, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, rec(topic, 1, "late", "5")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var n int
	next, err := kafka.ReadRanges(ctx, cl, topic, rs, func(r *kgo.Record) error {
		if string(r.Key) == "late" {
			t.Errorf("read a record produced after the end offsets were listed")
		}
		n++
		return nil
	})
	if err != nil || n != 4 {
		t.Fatalf("read %d records, err %v; want 4", n, err)
	}
	// The positions are where a follower continues without a gap: the
	// late record's batch was fetched, but its record was not passed on.
	for p, r := range rs {
		if next[p] != r.End {
			t.Errorf("partition %d: position %d, want the end %d (a follower from it must read the late record)", p, next[p], r.End)
		}
	}
}

// A topic that does not exist reads as empty; a canceled read returns.
func TestReadToEndMissingTopicAndCancel(t *testing.T) {
	k := testkit.StartKafka(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.ReadToEnd(context.Background(), cl, "no-such-topic-"+fmt.Sprint(time.Now().UnixNano()), func(*kgo.Record) error {
		t.Error("a record of a missing topic")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	topic, _ := newTopic(t, k, 1, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := kafka.ReadRanges(ctx, cl, topic, kafka.Ranges{0: {From: 0, End: 10}}, func(*kgo.Record) error { return nil }); err == nil {
		t.Fatal("a canceled read of a range that is never reached returned no error")
	}
}

// On a compacted topic (Apache Kafka: kfake does not compact) the read skips
// the offsets compaction removed, ends although its last data records are
// gone or followed by a transaction marker, and yields the newest value of
// every key.
func TestReadToEndCompactedTopic(t *testing.T) {
	k := testkit.StartKafka(t)
	if !k.Real {
		t.Skip("kfake does not compact; run with KAFKA_BROKERS (make test-kafka)")
	}
	str := func(s string) *string { return &s }
	topic, cl := newTopic(t, k, 1, map[string]*string{
		"cleanup.policy": str("compact"), "segment.ms": str("100"), "min.cleanable.dirty.ratio": str("0.01"),
		"min.compaction.lag.ms": str("0"), "delete.retention.ms": str("0"),
	})
	ctx := context.Background()
	produced := 0
	for round := 1; round <= 3; round++ {
		var recs []*kgo.Record
		for i := range 10 {
			v := fmt.Sprint(round)
			if round == 3 && i >= 8 {
				v = "" // tombstones for k8, k9
			}
			recs = append(recs, rec(topic, 0, fmt.Sprintf("k%d", i), v))
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		produced += len(recs)
		time.Sleep(300 * time.Millisecond) // the next append rolls the segment
	}
	txn(t, k, topic+"-txn", true, rec(topic, 0, "k0", "last"))
	produced++
	time.Sleep(300 * time.Millisecond)
	txn(t, k, topic+"-txn", false, rec(topic, 0, "k1", "aborted")) // abort marker last
	// Wait for the log cleaner (it runs every 15s by default).
	deadline := time.Now().Add(120 * time.Second)
	for {
		got, offs := readAll(t, cl, topic)
		if len(got[0]) < produced {
			latest := map[string]string{}
			for _, kv := range got[0] {
				key, val, _ := strings.Cut(kv, "=")
				latest[key] = val
			}
			for i := 1; i < 8; i++ {
				if latest[fmt.Sprintf("k%d", i)] != "3" {
					t.Errorf("k%d = %q, want 3", i, latest[fmt.Sprintf("k%d", i)])
				}
			}
			if latest["k0"] != "last" || latest["k8"] != "" || latest["k9"] != "" {
				t.Errorf("k0 %q, k8 %q, k9 %q; want last and deleted", latest["k0"], latest["k8"], latest["k9"])
			}
			gaps := len(offs[0]) > 0 && offs[0][0] > 0 // the log start is 0: compaction does not move it
			for i := 1; i < len(offs[0]); i++ {
				gaps = gaps || offs[0][i] > offs[0][i-1]+1
			}
			if !gaps || !slices.IsSorted(offs[0]) {
				t.Errorf("offsets %v: want increasing offsets with compacted gaps", offs[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the topic was not compacted within 2 minutes (%d records read)", len(got[0]))
		}
		time.Sleep(2 * time.Second)
	}
}

// A range whose start retention deleted resumes at the new log start, and a
// range that retention deleted entirely ends there: the position returned is
// the new log start, past the range's End, so that a follower does not ask
// for deleted offsets.
func TestReadRangesPastRetention(t *testing.T) {
	k := testkit.StartKafka(t)
	topic, cl := newTopic(t, k, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range int32(2) {
		for i := range 10 {
			if err := cl.ProduceSync(ctx, rec(topic, p, fmt.Sprint(i), "v")).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})  // p0: the range's start deleted
	del.Add(kadm.Offset{Topic: topic, Partition: 1, At: 10}) // p1: all of it deleted
	resp, err := kadm.NewClient(cl).DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32][]int64{}
	next, err := kafka.ReadRanges(ctx, cl, topic, kafka.Ranges{0: {From: 0, End: 10}, 1: {From: 0, End: 6}}, func(r *kgo.Record) error {
		got[r.Partition] = append(got[r.Partition], r.Offset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{4, 5, 6, 7, 8, 9}; !slices.Equal(got[0], want) || len(got[1]) != 0 {
		t.Fatalf("read %v, want p0 %v and nothing of p1", got, want)
	}
	if next[0] != 10 || next[1] != 10 {
		t.Fatalf("positions %v, want 10 for both (p0 its End, p1 its new log start past End 6)", next)
	}
}

// ReadRounds passes each fetch response's partitions together: the same
// records, in the same per-partition order, and the same read positions as
// ReadBatches, with a round holding several partitions (the point of it)
// and each partition at most once per round. Records of an aborted
// transaction are skipped by both.
func TestReadRoundsGroupsAResponsesPartitions(t *testing.T) {
	k := testkit.StartKafka(t)
	topic, cl := newTopic(t, k, 3, nil)
	var recs []*kgo.Record
	for i := range 300 {
		p := int32(i % 3)
		recs = append(recs, rec(topic, p, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)))
	}
	txn(t, k, "rounds-a", true, recs[:150]...)
	txn(t, k, "rounds-b", false, rec(topic, 1, "aborted", "x"))
	txn(t, k, "rounds-c", true, recs[150:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ranges, err := kafka.ToEnd(ctx, cl, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32][]string{}
	wantNext, err := kafka.ReadBatches(ctx, cl, topic, ranges, func(p int32, rs []*kgo.Record) error {
		for _, r := range rs {
			want[p] = append(want[p], fmt.Sprintf("%s=%s@%d", r.Key, r.Value, r.Offset))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32][]string{}
	widest := 0
	next, err := kafka.ReadRounds(ctx, cl, topic, ranges, func(round []kafka.Part) error {
		seen := map[int32]bool{}
		for _, part := range round {
			if seen[part.Partition] {
				t.Errorf("partition %d twice in one round", part.Partition)
			}
			seen[part.Partition] = true
			if len(part.Records) == 0 {
				t.Errorf("partition %d passed without records", part.Partition)
			}
			for _, r := range part.Records {
				if r.Partition != part.Partition {
					t.Errorf("a record of partition %d in part %d", r.Partition, part.Partition)
				}
				got[part.Partition] = append(got[part.Partition], fmt.Sprintf("%s=%s@%d", r.Key, r.Value, r.Offset))
			}
		}
		widest = max(widest, len(round))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if !slices.Equal(got[p], want[p]) {
			t.Errorf("partition %d: ReadRounds read %v, ReadBatches %v", p, got[p], want[p])
		}
		if len(want[p]) != 100 {
			t.Errorf("partition %d: %d records, want 100", p, len(want[p]))
		}
		if next[p] != wantNext[p] {
			t.Errorf("partition %d: ReadRounds ends at %d, ReadBatches at %d", p, next[p], wantNext[p])
		}
	}
	if widest < 2 {
		t.Errorf("no round held more than %d partition(s): ReadRounds did not group a response", widest)
	}
}
