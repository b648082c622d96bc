package worker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchOf is one poll of one topic: per partition, the offsets of its
// records, its high watermark and last stable offset.
func fetchOf(parts ...kgo.FetchPartition) kgo.Fetches {
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: parts}}}}
}

func part(p int32, hwm, lso int64, offsets ...int64) kgo.FetchPartition {
	fp := kgo.FetchPartition{Partition: p, HighWatermark: hwm, LastStableOffset: lso}
	for _, o := range offsets {
		fp.Records = append(fp.Records, &kgo.Record{Topic: "t", Partition: p, Offset: o})
	}
	return fp
}

// TestCaughtUp is the rule of adaptive publication's light stream.
func TestCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		poll  kgo.Fetches
		light bool
	}{
		{"empty poll", nil, true},
		{"partition read to its high watermark", fetchOf(part(0, 10, 10, 8, 9)), true},
		{"every partition at its end", fetchOf(part(0, 10, 10, 9), part(1, 3, 3, 0, 1, 2)), true},
		{"a transaction's commit marker ends the partition", fetchOf(part(0, 11, 11, 8, 9)), true},
		{"a partition with a record without data left", fetchOf(part(0, 10, 10), part(1, 5, 5, 4)), true},
		{"a backlog: stopped short of the end", fetchOf(part(0, 20_000, 20_000, 498, 499)), false},
		{"one partition of two behind", fetchOf(part(0, 10, 10, 9), part(1, 900, 900, 100)), false},
		{"an open transaction: read to the last stable offset", fetchOf(part(0, 50, 10, 9)), true},
		{"unknown high watermark", fetchOf(part(0, -1, -1, 9)), false},
	} {
		if got := caughtUp(tc.poll); got != tc.light {
			t.Errorf("%s: caughtUp = %v, want %v", tc.name, got, tc.light)
		}
	}
}
