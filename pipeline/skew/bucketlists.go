package skew

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// Bucketed list features: a bucketed first_k or last_k (a map from bucket
// to list, of numbers or of strings) and a bucketed top_k (a map from
// bucket to a top_k list). The lookup log carries them in "bucket_lists",
// "bucket_string_lists" and "bucket_tops"; skew recomputes each map with
// backfill (BucketCell.List, Strs, Top) and compares them bucket by
// bucket: the same keys, lists equal element by element exactly (their
// elements are event values), tops as compareTop compares a top_k.

// servedBucketLists are the bucketed list values of one lookup-log entry,
// by feature id (each section nil when the entry has none).
type servedBucketLists struct {
	lists map[string]map[string][]float64
	strs  map[string]map[string][]string
	tops  map[string]map[string]*lookuplog.ServedTop
}

// bucketListsOf returns e's bucketed list sections.
func bucketListsOf(e *lookuplog.Entry) servedBucketLists {
	return servedBucketLists{lists: e.BucketLists, strs: e.BucketStringLists, tops: e.BucketTops}
}

// ids calls note for the id of every bucketed list value of s.
func (s servedBucketLists) ids(note func(string)) {
	for id := range s.lists {
		note(id)
	}
	for id := range s.strs {
		note(id)
	}
	for id := range s.tops {
		note(id)
	}
}

// isBucketList reports whether f's values are maps of lists (a bucketed
// first_k, last_k or top_k), compared by compareBucketListColumn.
func isBucketList(f *config.Feature) bool {
	return f.Bucket != "" && (f.Aggregation.List() || f.Aggregation == aggregations.TopK)
}

// compareBucketListColumn compares column c of vals (feature f, a bucketed
// first_k, last_k or top_k) at every point with the value served in its
// entry's section (points whose entry did not serve f are skipped).
func (fr *FeatureReport) compareBucketListColumn(f *config.Feature, vals *backfill.Values, c int, points []backfill.Point, served []servedBucketLists, examples int) {
	fr.Buckets = true
	str := f.OutputType() == aggregations.TypeString
	switch {
	case f.Aggregation == aggregations.TopK:
		fr.Top = true
	default:
		fr.List, fr.String = true, str
	}
	for i, p := range points {
		cells, ok := vals.Buckets(i, c)
		switch {
		case fr.Top:
			s, logged := served[i].tops[f.ID]
			if !logged {
				continue
			}
			var r map[string]json.RawMessage
			if ok {
				r = make(map[string]json.RawMessage, len(cells))
				for _, cell := range cells {
					if cell.OK {
						r[cell.Key] = json.RawMessage(backfill.TopJSON(cell.Top, f.OutputType()))
					} else {
						r[cell.Key] = nil
					}
				}
			}
			fr.compareBucketTops(p, s, r, examples)
		case str:
			s, logged := served[i].strs[f.ID]
			if !logged {
				continue
			}
			var r map[string][]string
			if ok {
				r = make(map[string][]string, len(cells))
				for _, cell := range cells {
					r[cell.Key] = cell.Strs // nil when not OK: null, as served
				}
			}
			fr.compareBucketStringLists(p, s, r, examples)
		default:
			s, logged := served[i].lists[f.ID]
			if !logged {
				continue
			}
			var r map[string][]float64
			if ok {
				r = make(map[string][]float64, len(cells))
				for _, cell := range cells {
					r[cell.Key] = cell.List
				}
			}
			fr.compareBucketLists(p, s, r, examples)
		}
	}
}

// sameBuckets adds one row to fr and reports whether the served and
// recomputed maps (nil: null) match: both null, or the same bucket keys
// with eq true for every bucket. A null on one side only is a null
// mismatch.
func sameBuckets[S, R any](fr *FeatureReport, served map[string]S, recomputed map[string]R, eq func(s S, r R) bool) bool {
	fr.Rows++
	switch {
	case served == nil && recomputed == nil:
		return true
	case served == nil || recomputed == nil:
		fr.NullMismatches++
		return false
	}
	match := len(served) == len(recomputed)
	for k, s := range served {
		r, ok := recomputed[k]
		if !ok || !eq(s, r) {
			match = false
		}
	}
	return match
}

// compareBucketLists adds one row of a bucketed first_k or last_k of
// numbers to fr: the maps match when both are null, or have the same keys
// and, bucket by bucket, lists equal element by element exactly (a null
// list only against a null one). MaxAbsDiff and MaxRelDiff are over the
// elements at the same position of two lists of one bucket.
func (fr *FeatureReport) compareBucketLists(p backfill.Point, served, recomputed map[string][]float64, examples int) {
	if sameBuckets(fr, served, recomputed, func(s, r []float64) bool {
		for j := range min(len(s), len(r)) {
			if a, b := s[j], r[j]; a != b {
				abs := math.Abs(a - b)
				fr.MaxAbsDiff = math.Max(fr.MaxAbsDiff, abs)
				fr.MaxRelDiff = math.Max(fr.MaxRelDiff, abs/math.Max(math.Abs(a), math.Abs(b)))
			}
		}
		return (s == nil) == (r == nil) && slices.Equal(s, r)
	}) {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		fr.Examples = append(fr.Examples, Example{Key: p.Key, At: p.T, ServedBucketLists: cloneLists(served), RecomputedBucketLists: cloneLists(recomputed)})
	}
}

// compareBucketStringLists is compareBucketLists for a bucketed first_k or
// last_k of a string field: lists equal byte for byte, element by element.
func (fr *FeatureReport) compareBucketStringLists(p backfill.Point, served, recomputed map[string][]string, examples int) {
	if sameBuckets(fr, served, recomputed, func(s, r []string) bool {
		return (s == nil) == (r == nil) && slices.Equal(s, r)
	}) {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		fr.Examples = append(fr.Examples, Example{Key: p.Key, At: p.T, ServedBucketStringLists: cloneLists(served), RecomputedBucketStringLists: cloneLists(recomputed)})
	}
}

// compareBucketTops adds one row of a bucketed top_k to fr: served (each
// bucket's JSON text and error, as logged) and recomputed (each bucket's
// JSON text as the lookup API writes it; nil: null) match when both are
// null, or have the same keys and, bucket by bucket, tops that match as
// compareTop's do: equal texts while the served bucket is exact (error 0),
// else counts that agree within its error. Backfill gives no per-bucket
// error, so the recomputed bucket is taken as exact: a bucket exact when
// served but not when recomputed is a mismatch (the conservative side).
func (fr *FeatureReport) compareBucketTops(p backfill.Point, served map[string]*lookuplog.ServedTop, recomputed map[string]json.RawMessage, examples int) {
	if sameBuckets(fr, served, recomputed, func(s *lookuplog.ServedTop, r json.RawMessage) bool {
		switch {
		case s == nil || r == nil:
			return s == nil && r == nil
		case s.Error == 0:
			return bytes.Equal(bytes.TrimSpace(s.Value), r)
		}
		return topsAgree(s.Value, r, s.Error)
	}) {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		ex := Example{Key: p.Key, At: p.T, RecomputedBucketTops: maps.Clone(recomputed)}
		if served != nil {
			ex.ServedBucketTops = make(map[string]json.RawMessage, len(served))
			for k, s := range served {
				ex.ServedBucketTops[k] = nil
				if s != nil {
					ex.ServedBucketTops[k] = bytes.Clone(s.Value)
				}
			}
		}
		fr.Examples = append(fr.Examples, ex)
	}
}

// cloneLists is a deep copy of a map of lists (nil stays nil).
func cloneLists[V any](m map[string][]V) map[string][]V {
	if m == nil {
		return nil
	}
	out := make(map[string][]V, len(m))
	for k, l := range m {
		out[k] = slices.Clone(l)
	}
	return out
}
