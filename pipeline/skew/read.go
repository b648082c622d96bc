package skew

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/internal/kafka"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// logged is one decoded lookup-log entry with where it was read.
type logged struct {
	entry     *lookuplog.Entry
	partition int32
	offset    int64
	index     int // of the entry in its record
}

// readLog reads topic from the first offset at or after since (zero: the log
// start) to the end offsets listed first, returning the decoded entries and
// the number of entries that did not decode.
func readLog(ctx context.Context, opts []kgo.Opt, topic string, since time.Time) ([]logged, []backfill.OffsetRange, int64, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	startMS := int64(math.MinInt64) // the log start
	if !since.IsZero() {
		startMS = since.UnixMilli()
	}
	ranges, _, err := backfill.ListRanges(ctx, kadm.NewClient(cl), topic, startMS)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("lookup log: %w", err)
	}
	read := kafka.Ranges{}
	for _, r := range ranges {
		read[r.Partition] = kafka.Range{From: r.From, End: r.To}
	}
	var out []logged
	var invalid int64
	_, err = kafka.ReadRanges(ctx, cl, topic, read, func(rec *kgo.Record) error {
		i := 0
		bad, _ := lookuplog.DecodeEach(rec.Value, func(e *lookuplog.Entry) {
			out = append(out, logged{entry: e, partition: rec.Partition, offset: rec.Offset, index: i})
			i++
		})
		invalid += int64(bad)
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read lookup log %s: %w", topic, err)
	}
	return out, ranges, invalid, nil
}
