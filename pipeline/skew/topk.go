package skew

import (
	"bytes"
	"encoding/json"

	"github.com/featurepipe/featurepipe/pipeline/backfill"
	"github.com/featurepipe/featurepipe/pipeline/lookuplog"
)

// compareTop adds one row of a top_k feature to fr: s as served (the
// lookup log's JSON text and error), r its recomputed JSON text (as the
// lookup API writes it) and re its error; nil is null.
//
// While both are exact (error 0: at most aggregations.TopKExactMax distinct
// values in the window) the texts must be equal. Past that the Misra-Gries
// summary depends on the order of updates and merges, which differ between
// the workers and backfill, so the rows match when they agree within the
// larger error e: a value listed by both has counts at most e apart, and a
// value listed by one side only has a count at most e above the smallest
// count the other lists (0 if it lists none).
func (fr *FeatureReport) compareTop(p backfill.Point, s *lookuplog.ServedTop, r []byte, re int64, hasR bool, examples int) {
	fr.Rows++
	match := true
	switch {
	case s == nil && !hasR:
	case s == nil || !hasR:
		match = false
		fr.NullMismatches++
	case s.Error == 0 && re == 0:
		match = bytes.Equal(bytes.TrimSpace(s.Value), r)
	default:
		match = topsAgree(s.Value, r, max(s.Error, re))
	}
	if match {
		return
	}
	fr.Mismatches++
	if len(fr.Examples) < examples {
		ex := Example{Key: p.Key, At: p.T}
		if s != nil {
			ex.ServedTop = bytes.Clone(s.Value)
		}
		if hasR {
			ex.RecomputedTop = bytes.Clone(r)
		}
		fr.Examples = append(fr.Examples, ex)
	}
}

// topsAgree reports whether two top_k texts agree within e (see
// compareTop); unparsable text never agrees.
func topsAgree(a, b []byte, e int64) bool {
	type entry struct {
		Value any   `json:"value"`
		Count int64 `json:"count"`
	}
	var la, lb []entry
	if json.Unmarshal(a, &la) != nil || json.Unmarshal(b, &lb) != nil {
		return false
	}
	counts := func(l []entry) (map[any]int64, int64) {
		m := make(map[any]int64, len(l))
		least := int64(0)
		for i, x := range l {
			m[x.Value] = x.Count
			if i == 0 || x.Count < least {
				least = x.Count
			}
		}
		return m, least
	}
	ma, leastA := counts(la)
	mb, leastB := counts(lb)
	for v, c := range ma {
		o, ok := mb[v]
		if (ok && (c-o > e || o-c > e)) || (!ok && c > leastB+e) {
			return false
		}
	}
	for v, c := range mb {
		if _, ok := ma[v]; !ok && c > leastA+e {
			return false
		}
	}
	return true
}
