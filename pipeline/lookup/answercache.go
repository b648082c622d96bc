package lookup

import (
	"math"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/internal/config"
	"github.com/featurepipe/featurepipe/internal/keys"
)

// The answer cache: the finalized values a lookup computed from an entity's
// cached view, kept on that view's cache entry (cacheEntry.ans) with the
// interval of request times they are valid for, so that the next lookup of
// the entity at a time in that interval copies them instead of parsing the
// view, decoding the series of its features and folding their windows.
//
// Exactness. A value of feature f computed as of T from view bytes V equals
// the value computed from V as of any T' in [T, until), where until is
// validUntil's bound: the first time the fold could read anything else.
// Within a view, a value depends on the request time only through
//   - the window's start, floor(T - size, hop), which moves at the next hop
//     boundary plus the window's size;
//   - the tiles with Start < T: the next one (Start >= T) joins at Start+1;
//   - the pending (future-stamped) events of the window's tiles, each
//     folded once T > its ts;
//   - the ttl (config.Feature.Expired): a value expires once T - LastTS >
//     ttl;
//   - whether the entity is known (knownAt): once a first-seen marker is
//     < T it stays known.
//
// A derived feature's values depend on T only through its inputs'. The
// view a lookup reads changes only when the feature-log consumer commits a
// new value of the entity, and a commit replaces the cache entry (see
// viewCache), answers included: an answer is only ever served with the
// bytes it was computed from. TestAnswerCacheIsExact interleaves applies,
// lookups and clock moves across hop boundaries and compares every answer
// with one computed from Pebble.
//
// What is cached: aggregated and derived features with a numeric value.
// Bucketed, top_k, list (first_k, last_k) and string features are computed
// at every lookup: their values are slices or strings a caller of the Go API
// may hold. A key is answered from the cache only when every feature asked
// has a valid answer there: a request that asks one of those features folds
// the view for every key (its numeric answers are still stored).
//
// Bound and memory: one slice of answers per cached view (so at most
// Options.CacheEntries of them), holding at most one answer per feature
// version of the entity (40 bytes each, TestCachedAnswerSize), one
// pointer-free object, replaced (not grown) when a lookup recomputes: 7
// features cost 280 bytes per entity, 28 MB for the default 100,000 cached
// entities; the cache entry itself grows by a slice header (24 bytes).
// Disabled with Options.NoAnswerCache, or with the view cache
// (CacheEntries < 0).

// cachedAnswer is one feature's value as of any T in [from, until), as
// fold computes it for a feature that is not warming up (the endpoint
// applies WARMING_UP per request, as fold does).
type cachedAnswer struct {
	from, until int64 // ms
	v           float64
	updated     int64 // ms
	feat        int32 // featureInfo.idx
	status      uint8 // index in answerStatuses
	hasV        bool
}

// answerStatuses are the statuses a cachedAnswer holds, by index.
var answerStatuses = [...]string{StatusPresent, StatusEmptyWindow, StatusNotFound, StatusExpired}

func statusCode(s string) (uint8, bool) {
	for i, x := range answerStatuses {
		if x == s {
			return uint8(i), true
		}
	}
	return 0, false
}

// cacheable reports whether values of def can be cached (see the top of
// this file): the features fold computes with foldDef, whose value is one
// number — not bucketed, top_k, list or string features. It must follow
// fold's dispatch; newAnswers also checks each value (scalarValue).
func cacheable(def *config.Feature) bool {
	if def.Bucket != "" {
		return false
	}
	if def.Derived != nil {
		return true
	}
	return def.Aggregation != aggregations.TopK && !def.Aggregation.List() && def.OutputType() != aggregations.TypeString
}

// scalarValue reports whether v holds nothing but what a cachedAnswer
// keeps (TestScalarValueCoversEveryField keeps it in step with value).
func scalarValue(v *value) bool {
	return v.list == nil && v.str == "" && v.strs == nil && v.top == nil && v.topErr == 0 && v.buckets == nil
}

// findAnswer returns the answer of feature idx in ans, and whether it is
// valid as of T.
func findAnswer(ans []cachedAnswer, idx int, T int64) (*cachedAnswer, bool) {
	for i := range ans {
		c := &ans[i]
		if int(c.feat) == idx {
			return c, c.from <= T && T < c.until
		}
	}
	return nil, false
}

// fromAnswerCache appends to a.vals the values of every feature of a.feats
// from a cached view's answers as of T, and reports whether it could: when
// one is missing or out of its interval, it appends nothing and returns
// false. It allocates nothing.
func (a *lookupAnswer) fromAnswerCache(ans []cachedAnswer, T int64) bool {
	if len(ans) == 0 {
		return false
	}
	n := len(a.vals)
	for _, f := range a.feats {
		c, ok := findAnswer(ans, f.idx, T)
		if !ok {
			a.vals = a.vals[:n]
			return false
		}
		fv := value{typ: f.def.OutputType(), v: c.v, hasV: c.hasV, status: answerStatuses[c.status],
			version: f.def.Version, updated: c.updated}
		if f.warming {
			fv.status = StatusWarmingUp
		}
		a.vals = append(a.vals, fv)
	}
	return true
}

// newAnswers returns the answers to cache for a view, nil for none: vals,
// the values of feats that are not warming up as of T, computed from v
// (parsed from the view's bytes) with known = knownAt(v, T), plus the
// answers old (the view's) holds for other features that are still valid
// as of T.
func newAnswers(old []cachedAnswer, feats []pickedFeature, vals []value, v *lookupView, T int64, known bool) ([]cachedAnswer, error) {
	ans := make([]cachedAnswer, 0, len(feats)+len(old))
	kuntil := knownUntil(v, T, known)
	for j, f := range feats {
		if !cacheable(f.def) || !scalarValue(&vals[j]) {
			continue
		}
		if c, _ := findAnswer(ans, f.idx, T); c != nil {
			continue // the same feature asked twice
		}
		st, ok := statusCode(vals[j].status)
		if !ok {
			continue
		}
		until := kuntil
		if known {
			u, err := validUntil(f.def, v, T)
			if err != nil {
				return nil, err
			}
			until = min(until, u)
		}
		if until <= T {
			continue
		}
		ans = append(ans, cachedAnswer{from: T, until: until, v: vals[j].v, updated: vals[j].updated,
			feat: int32(f.idx), status: st, hasV: vals[j].hasV})
	}
	for _, c := range old {
		if d, _ := findAnswer(ans, int(c.feat), T); d == nil && c.from <= T && T < c.until {
			ans = append(ans, c)
		}
	}
	if len(ans) == 0 {
		return nil, nil
	}
	return ans, nil
}

// knownUntil is the first time after T at which knownAt(v, ·) may differ
// from known = knownAt(v, T): never once known; else when the earliest
// marker at or after T becomes < T.
func knownUntil(v *lookupView, T int64, known bool) int64 {
	if known {
		return math.MaxInt64
	}
	until := int64(math.MaxInt64)
	for i, id := range v.ids {
		if !keys.IsSeen(id) {
			continue
		}
		s, err := v.seriesAt(i)
		if err != nil {
			return T // not cached; the lookup reports the error
		}
		if !s.Base.Empty() && s.Base.LastTS >= T {
			until = min(until, addSat(s.Base.LastTS, 1))
		}
	}
	return until
}

// validUntil is the first time after T at which the value of feature def
// of a known entity, folded from v, may differ from its value as of T (see
// the top of this file); math.MaxInt64 when it never does.
func validUntil(def *config.Feature, v *lookupView, T int64) (int64, error) {
	if d := def.Derived; d != nil {
		until := int64(math.MaxInt64)
		for _, in := range d.Inputs {
			u, err := validUntil(in, v, T)
			if err != nil {
				return 0, err
			}
			until = min(until, u)
		}
		return until, nil
	}
	w := def.Window
	until := int64(math.MaxInt64)
	if !w.Lifetime() {
		// floor(T' - size, hop) > floor(T - size, hop) from T' = start + hop + size.
		until = addSat(addSat(w.Start(T), w.Hop), w.Size)
	}
	found := false
	for i, x := range v.ids {
		if string(x) != def.ID {
			if found {
				break // the entries of id are adjacent
			}
			continue
		}
		found = true
		sr, err := v.seriesAt(i)
		if err != nil {
			return 0, err
		}
		until = min(until, seriesUntil(sr, w, T))
	}
	if def.TTL > 0 {
		ir, _, _, err := v.read(def.ID, w, T)
		if err != nil {
			return 0, err
		}
		if !ir.Empty() && !def.Expired(ir, T) {
			until = min(until, addSat(addSat(ir.LastTS, def.TTL), 1)) // expired once T - LastTS > ttl
		}
	}
	return until, nil
}

// seriesUntil is the first time after T at which sr.Read(w, ·) may read
// other tiles or pending events than as of T, the window's start aside:
// the next tile (Start >= T) joins at Start+1, and a pending event of a
// tile in the window with ts >= T at ts+1.
func seriesUntil(sr *aggregations.Series, w aggregations.Window, T int64) int64 {
	until := int64(math.MaxInt64)
	lo := w.Start(T)
	for i := range sr.Tiles {
		t := &sr.Tiles[i]
		if t.Start < lo {
			continue
		}
		if t.Start >= T {
			return min(until, addSat(t.Start, 1))
		}
		for _, p := range t.Pending {
			if p.TS >= T {
				until = min(until, addSat(p.TS, 1))
			}
		}
	}
	return until
}

// addSat returns a + b for b >= 0, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if r := a + b; r >= a {
		return r
	}
	return math.MaxInt64
}
