package aggtest

import (
	"cmp"
	"math"
	"slices"

	"github.com/featurepipe/featurepipe/aggregations"
)

// BucketGroups is a bucketed feature's value as of T by definition, before
// the kind is applied: the events of the window (as BruteForce takes them)
// grouped by Event.Bucket, the maxBuckets groups with the most events kept
// (ties: the smaller key first) and every other event in the group
// aggregations.OtherBucket (an event whose bucket is OtherBucket too).
// maxBuckets < 1 means aggregations.DefaultMaxBuckets. An empty window gives
// an empty map. Apply BruteForce, BruteForceList, BruteForceString or
// BruteForceStringList to each group, with the same window and T, for each
// bucket's value. It matches FinalizeBuckets exactly while no tile held more
// than aggregations.BucketsMax distinct buckets. Cost: O(n log n).
func BucketGroups(w aggregations.Window, events []aggregations.Event, T int64, maxBuckets int) map[string][]aggregations.Event {
	if maxBuckets < 1 {
		maxBuckets = aggregations.DefaultMaxBuckets
	}
	lo := int64(math.MinInt64)
	if w.Size != 0 {
		lo = floor(T-w.Size, w.Hop)
	}
	groups := map[string][]aggregations.Event{}
	for _, e := range events {
		if e.TS >= lo && e.TS < T {
			groups[e.Bucket] = append(groups[e.Bucket], e)
		}
	}
	var keys []string
	for k := range groups {
		if k != aggregations.OtherBucket {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(len(groups[b]), len(groups[a])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	if len(keys) > maxBuckets {
		for _, k := range keys[maxBuckets:] {
			groups[aggregations.OtherBucket] = append(groups[aggregations.OtherBucket], groups[k]...)
			delete(groups, k)
		}
	}
	return groups
}
