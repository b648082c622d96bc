package kafka_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/internal/testkit"
)

// smallFetches starts a kfake cluster whose topic "t" holds perPartition
// incompressible 1 KiB records in each of its 2 partitions and answers
// Fetches of at most 1 MiB in all (kfake, like Kafka, answers the
// partitions after that point without batches), failing the failAt-th
// Fetch (0: none) with a non-retriable partition error. It returns a
// client of it and a context for the read.
func smallFetches(t *testing.T, perPartition int, failAt int32) (*kgo.Client, context.Context) {
	t.Helper()
	c, cl := testkit.KFake(t, 2, "t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	for p := range int32(2) {
		var recs []*kgo.Record
		for i := range perPartition {
			value := make([]byte, 1<<10)
			rand.Read(value) // incompressible: the batches keep their size
			recs = append(recs, &kgo.Record{Topic: "t", Partition: p, Key: []byte(fmt.Sprint(i)), Value: value})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var fetches atomic.Int32
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		if fetches.Add(1) != failAt {
			fr.MaxBytes = 1 << 20
			for i := range fr.Topics {
				for j := range fr.Topics[i].Partitions {
					fr.Topics[i].Partitions[j].PartitionMaxBytes = 1 << 20
				}
			}
			return nil, nil, false
		}
		resp := fr.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range fr.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return cl, ctx
}

// checkOnce fails unless each of the 2 partitions had its perPartition
// records passed exactly once and reads on from its end.
func checkOnce(t *testing.T, seen map[int32]map[int64]int, next map[int32]int64, perPartition int) {
	t.Helper()
	for p := range int32(2) {
		offs := seen[p]
		if len(offs) != perPartition || next[p] != int64(perPartition) {
			t.Errorf("partition %d: %d records passed, read position %d; want %d and %d", p, len(offs), next[p], perPartition, perPartition)
		}
		for o, n := range offs {
			if n != 1 {
				t.Errorf("partition %d offset %d passed %d times", p, o, n)
			}
		}
	}
}

// TestReadRangesWhenResponsesAreFull: a partition answered without batches
// because the response reached its MaxBytes on another partition is read
// later, not taken for compacted away (before: partition 1, answered empty
// while partition 0 filled every response, was skipped whole).
func TestReadRangesWhenResponsesAreFull(t *testing.T) {
	const perPartition = 4 << 10 // 4 MiB per partition, 1 MiB per Fetch
	cl, ctx := smallFetches(t, perPartition, 0)
	rs, err := kafka.ToEnd(ctx, cl, "t")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]map[int64]int{0: {}, 1: {}}
	next, err := kafka.ReadRanges(ctx, cl, "t", rs, func(r *kgo.Record) error { seen[r.Partition][r.Offset]++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, seen, next, perPartition)
}

// TestCatchUpResumesAfterAFailure: a catch-up read that fails midway (here
// its third Fetch is answered with a non-retriable partition error) is
// retried, each partition resuming after the last record passed on, so
// every record is passed exactly once, and the read positions returned are
// the partitions' ends.
func TestCatchUpResumesAfterAFailure(t *testing.T) {
	const perPartition = 4 << 10
	cl, ctx := smallFetches(t, perPartition, 3)
	seen := map[int32]map[int64]int{0: {}, 1: {}}
	retries := 0
	next, err := kafka.CatchUp(ctx, cl, "t", nil, func(r *kgo.Record) { seen[r.Partition][r.Offset]++ },
		func(err error) { retries++ })
	if err != nil {
		t.Fatal(err)
	}
	if retries != 1 {
		t.Errorf("%d retries, want 1 (the failed Fetch)", retries)
	}
	checkOnce(t, seen, next, perPartition)
}

// TestStartAt: a range starts at its first record stamped at or after the
// time, or at its End when it has none; never before its own From.
func TestStartAt(t *testing.T) {
	c, cl := testkit.KFake(t, 3, "t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := range 10 {
		for p := range int32(3) {
			ts := base.Add(time.Duration(i) * time.Second)
			if p == 1 {
				ts = base // every record before the time
			}
			recs = append(recs, &kgo.Record{Topic: "t", Partition: p, Value: []byte{byte(i)}, Timestamp: ts})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reader, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rs, err := kafka.ToEnd(ctx, reader, "t")
	if err != nil {
		t.Fatal(err)
	}
	rs[2] = kafka.Range{From: 8, End: rs[2].End} // already past the time
	if err := kafka.StartAt(ctx, reader, "t", base.Add(5*time.Second).UnixMilli(), rs); err != nil {
		t.Fatal(err)
	}
	want := kafka.Ranges{0: {From: 5, End: 10}, 1: {From: 10, End: 10}, 2: {From: 8, End: 10}}
	if fmt.Sprint(rs) != fmt.Sprint(want) {
		t.Errorf("ranges %v, want %v", rs, want)
	}
}
