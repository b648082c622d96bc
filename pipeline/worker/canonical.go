package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// offCanonicalLogEvery is the least time between two log lines about
// off-canonical records of one source.
const offCanonicalLogEvery = time.Minute

// canonical tells whether a source record is in its key's canonical
// partition: the one Kafka's Java client and franz-go's default partitioner
// choose, murmur2(key) masked to 31 bits modulo the partition count
// (franz-go's own hasher, through kgo.StickyKeyPartitioner(nil)). Records
// outside it come from producers with another partitioner (librdkafka's
// default CRC32 consistent_random, for instance); their values stay exact
// (the lookup view merges the tiles of an entity's partitions), this only
// counts them for operators.
//
// One per partition state: the partitioner is not shared between the
// goroutines that apply partitions in parallel. The zero value counts
// nothing (partition count unknown).
type canonical struct {
	part   kgo.TopicPartitioner
	n      int   // partitions of the topic when the partition was assigned
	staged int64 // off-canonical records in the staged batch
}

// newCanonical returns the check for a topic of n partitions (n <= 0: no check).
func newCanonical(n int) canonical {
	if n <= 0 {
		return canonical{}
	}
	return canonical{part: kgo.StickyKeyPartitioner(nil).ForTopic(""), n: n}
}

// observe counts r if it has a key and is outside its canonical partition.
// A record without a key has none (producers spread those freely). Cost:
// one murmur2 over the key, no allocation.
func (c *canonical) observe(r *kgo.Record) {
	if c.part == nil || r.Key == nil {
		return
	}
	if int32(c.part.Partition(r, c.n)) != r.Partition {
		c.staged++
	}
}

// offCanonicalLog rate-limits the log line about a source's off-canonical
// records: at most one per offCanonicalLogEvery, with the count since the
// previous line. Only the poll goroutine uses it.
type offCanonicalLog struct {
	last    time.Time
	pending int64
	total   int64
}

// commitOffCanonical adds the staged off-canonical records of ps, now
// committed, to the metric and logs them, rate-limited per source.
func (w *Worker) commitOffCanonical(ps *partState, counter prometheus.Counter) {
	n := ps.canon.staged
	ps.canon.staged = 0
	if n == 0 {
		return
	}
	counter.Add(float64(n))
	src := ps.plan.Source.Name
	l := w.offCanonLogs[src]
	if l == nil {
		l = &offCanonicalLog{}
		w.offCanonLogs[src] = l
	}
	l.pending += n
	l.total += n
	if now := time.Now(); now.Sub(l.last) >= offCanonicalLogEvery {
		w.log.Warn("source records outside their key's canonical partition (murmur2, as Kafka's Java client): "+
			"a producer uses another partitioner; values stay exact, but each extra partition of an entity costs lookups one more series to fold",
			zap.String("source", src), zap.String("topic", ps.tp.topic), zap.Int64("records_since_last_line", l.pending),
			zap.Int64("records_total", l.total))
		l.last, l.pending = now, 0
	}
}

// partitionCountTTL is how long a topic's partition count is reused.
const partitionCountTTL = time.Minute

// partitionCounted is a topic's partition count and when it was read.
type partitionCounted struct {
	n  int
	at time.Time
}

// partitionCount returns the number of partitions of topic, from the
// broker's metadata, reused for partitionCountTTL: an assignment of many
// partitions costs one metadata request per topic. Called with w.mu held
// (from the assignment callback).
func (w *Worker) partitionCount(ctx context.Context, topic string) (int, error) {
	if c, ok := w.partCounts[topic]; ok && time.Since(c.at) < partitionCountTTL {
		return c.n, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	td, err := kadm.NewClient(w.cl).ListTopics(ctx, topic)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	n := len(td[topic].Partitions)
	w.partCounts[topic] = partitionCounted{n: n, at: time.Now()}
	return n, nil
}
