package monitor

import (
	"cmp"
	"slices"
	"strconv"
)

// TopCapacity is how many values a TopValues guarantees to track: every
// value more frequent than 1/(TopCapacity+1) of the values added is in it,
// with its count underestimated by at most Error (at most
// added/(TopCapacity+1)). It keeps up to 2 x TopCapacity counters between
// purges.
const TopCapacity = 64

// TopShown is how many of the most frequent values Summary reports.
const TopShown = 10

// TopValues counts the most frequent values of a stream in bounded memory:
// a mergeable Misra-Gries summary (Agarwal et al., "Mergeable summaries",
// 2012; the algorithm of Apache DataSketches' frequent-items sketch, which
// has no Go release this module can fetch). Values are strings, so any
// type with a canonical text form can use it: list elements are numbers
// formatted by NumberKey, a string feature's values are themselves.
//
// Invariants: for every value v, true(v) - Error <= Count(v) <= true(v),
// and Error <= Added/(TopCapacity+1); a value absent from the counters was
// seen at most Error times. Memory: at most 2 x TopCapacity counters (the
// keys' bytes plus about 50 bytes each). Cost: Add is O(1) amortized (a
// purge, O(TopCapacity log TopCapacity), runs at most once every
// TopCapacity new values); Merge is O(TopCapacity log TopCapacity). Not
// safe for concurrent use.
type TopValues struct {
	counts map[string]int64
	added  int64
	err    int64
}

// NewTopValues returns an empty summary.
func NewTopValues() *TopValues { return &TopValues{counts: map[string]int64{}} }

// NumberKey is the key a number is counted under: its shortest exact
// decimal form ("3", "0.1", "-2.5e-07").
func NumberKey(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// Add counts one occurrence of v.
func (t *TopValues) Add(v string) {
	t.added++
	t.counts[v]++
	if len(t.counts) > 2*TopCapacity {
		t.purge()
	}
}

// purge subtracts the (TopCapacity+1)-th largest count from every counter
// and drops those left at zero or below, so that at most TopCapacity remain.
// Each subtracted unit is one occurrence of TopCapacity+1 distinct values
// forgotten at once, which is what bounds Error.
func (t *TopValues) purge() {
	cs := make([]int64, 0, len(t.counts))
	for _, c := range t.counts {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b int64) int { return cmp.Compare(b, a) })
	cut := cs[TopCapacity]
	for v, c := range t.counts {
		if c <= cut {
			delete(t.counts, v)
		} else {
			t.counts[v] = c - cut
		}
	}
	t.err += cut
}

// Merge adds o's counts to t (the merged summary keeps the invariants, with
// the errors added).
func (t *TopValues) Merge(o *TopValues) {
	if o == nil {
		return
	}
	for v, c := range o.counts {
		t.counts[v] += c
	}
	t.added += o.added
	t.err += o.err
	if len(t.counts) > 2*TopCapacity {
		t.purge()
	}
}

// Added is the number of values added (merged ones included).
func (t *TopValues) Added() int64 { return t.added }

// Error is the largest undercount of any value's Count.
func (t *TopValues) Error() int64 { return t.err }

// TopValue is one value and how often it was seen (at least; see
// TopValues.Error).
type TopValue struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// Top returns the n most frequent values, most frequent first (ties by
// value).
func (t *TopValues) Top(n int) []TopValue {
	out := make([]TopValue, 0, len(t.counts))
	for v, c := range t.counts {
		out = append(out, TopValue{v, c})
	}
	slices.SortFunc(out, func(a, b TopValue) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
	return out[:min(n, len(out))]
}

// topJSON is the serialized form of TopValues: every counter, to merge
// again.
type topJSON struct {
	Added  int64            `json:"added"`
	Error  int64            `json:"error"`
	Counts map[string]int64 `json:"counts"`
}

func (t *TopValues) toJSON() *topJSON {
	return &topJSON{Added: t.added, Error: t.err, Counts: t.counts}
}

func topFromJSON(j *topJSON) *TopValues {
	t := &TopValues{counts: j.Counts, added: j.Added, err: j.Error}
	if t.counts == nil {
		t.counts = map[string]int64{}
	}
	for len(t.counts) > 2*TopCapacity { // a hand-edited file: keep the bound
		t.purge()
	}
	return t
}
