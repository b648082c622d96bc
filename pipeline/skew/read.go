package skew

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// logged is one decoded lookup-log entry with where it was read.
type logged struct {
	entry     *lookuplog.Entry
	partition int32
	offset    int64
}

// readLog reads topic from the first offset at or after since (zero: the log
// start) to the end offsets listed first, returning the decoded entries and
// the number of records that did not decode.
func readLog(ctx context.Context, opts []kgo.Opt, topic string, since time.Time) ([]logged, []backfill.OffsetRange, int64, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("kafka client: %w", err)
	}
	startMS := int64(math.MinInt64) // the log start
	if !since.IsZero() {
		startMS = since.UnixMilli()
	}
	ranges, _, err := backfill.ListRanges(ctx, kadm.NewClient(cl), topic, startMS)
	cl.Close()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("lookup log: %w", err)
	}

	consume := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition -> end offset still to reach
	for _, r := range ranges {
		if r.From < r.To {
			consume[r.Partition] = kgo.NewOffset().At(r.From)
			remaining[r.Partition] = r.To
		}
	}
	if len(consume) == 0 {
		return nil, ranges, 0, nil
	}
	cl, err = kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}))...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var out []logged
	var invalid int64
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, nil, 0, fmt.Errorf("read lookup log %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("read lookup log %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, nil, 0, ferr
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			end, ok := remaining[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if rec.Offset == end-1 {
				delete(remaining, rec.Partition)
			}
			e, err := lookuplog.Decode(rec.Value)
			if err != nil {
				invalid++
				return
			}
			out = append(out, logged{entry: e, partition: rec.Partition, offset: rec.Offset})
		})
	}
	return out, ranges, invalid, nil
}
