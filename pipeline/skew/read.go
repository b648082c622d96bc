package skew

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		cl.Close()
		return nil, nil, 0, fmt.Errorf("list end offsets of lookup log %s (does the topic exist?): %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	}
	if err == nil {
		err = starts.Error()
	}
	cl.Close()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list start offsets of lookup log %s: %w", topic, err)
	}
	var ranges []backfill.OffsetRange
	ends.Each(func(e kadm.ListedOffset) {
		r := backfill.OffsetRange{Topic: topic, Partition: e.Partition, To: e.Offset}
		if s, ok := starts.Lookup(topic, e.Partition); ok && s.Offset >= 0 {
			r.From = min(s.Offset, r.To)
		} else {
			r.From = r.To // no record at or after since
		}
		ranges = append(ranges, r)
	})
	if len(ranges) == 0 {
		return nil, nil, 0, fmt.Errorf("lookup log %s has no partitions (does it exist?)", topic)
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Partition < ranges[j].Partition })

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
