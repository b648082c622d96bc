package aggregations

import (
	"cmp"
	"slices"
	"strings"
)

// Frequent items for TopK.
//
// A topK counts how often each value occurs, exactly, while it has seen at
// most TopKExactMax distinct values. Past that it is a Misra-Gries summary
// (Misra and Gries 1982; merged as in Agarwal et al., "Mergeable summaries",
// 2012, the algorithm of Apache DataSketches' frequent-items sketch, which
// has no Go release this module can fetch): when a new value would make it
// hold more than TopKExactMax counters, it purges: it subtracts c, the
// (TopKKept+1)-th largest count, from every counter and drops those left at
// zero or below, so that at most TopKKept remain, and adds c to err.
//
// Error bound (a guarantee, tested in topk_test.go): for every value v of
// the N events folded in, true(v) - err <= count(v) <= true(v) (count 0 for
// a value without a counter), and err <= N/(TopKKept+1) = N/501. Each purge
// with cut c removes at least (TopKKept+1)*c from the counters' total (the
// TopKKept+1 largest counters lose c each), merges add both the errors and
// the removed totals, so (TopKKept+1)*err <= N - sum(count) at all times;
// the decoder checks that inequality. Hence every value that occurs more
// than N/501 times keeps a counter, and err == 0 exactly when no purge ever
// happened: the counts are then exact.
//
// Determinism: the exact counts are a function of the multiset of values,
// so while the union of everything merged has at most TopKExactMax distinct
// values, every order of updates and merges gives the same counters (and
// the same encoding). A purge is a function of the counters it sees, and
// Merge is commutative, but past TopKExactMax distinct values the result
// depends on the order of updates and merges, within the bound above (as
// for every bounded-memory frequent-items summary).
//
// Values: a number feature's value is its float64 (-0 counts as 0; a
// boolean is 0 or 1, a long its exact float64); a string feature's (a
// window made WithStrings) is Event.Str, whatever Event.Value holds.
const (
	// TopKExactMax is the number of distinct values up to which top_k is
	// exact: a summary holds at most this many counters.
	TopKExactMax = 1000
	// TopKKept is the number of counters a purge keeps at most: the error
	// of every count is at most N/(TopKKept+1) for N events.
	TopKKept = 500
)

// topCounter is one counted value: v for a number feature, s for a string
// one; n >= 1.
type topCounter struct {
	v float64
	s string
	n int64
}

// topK is the frequent-items summary of a TopK IR.
//
// Invariant: cs is sorted by value (numbers ascending, or strings in byte
// order for strs), without duplicates, every n >= 1, len(cs) <=
// TopKExactMax; err == 0 means the counts are exact (sum of n == Count of
// the IR); otherwise (TopKKept+1)*err <= Count - sum of n.
type topK struct {
	strs bool
	cs   []topCounter
	err  int64
}

// compare orders counters by their value.
func (t *topK) compare(a, b *topCounter) int {
	if t.strs {
		return strings.Compare(a.s, b.s)
	}
	return cmp.Compare(a.v, b.v)
}

// counterOf is the counter of one occurrence of e's value.
func (t *topK) counterOf(e Event) topCounter {
	if t.strs {
		return topCounter{s: e.Str, n: 1}
	}
	v := e.Value
	if v == 0 {
		v = 0 // -0 and 0 are one value
	}
	return topCounter{v: v, n: 1}
}

// add counts one occurrence of e's value: O(log n) to find its counter,
// O(n) to insert a new one; a purge (O(n log n), n = TopKExactMax+1) at
// most once every TopKExactMax-TopKKept new values.
func (t *topK) add(e Event) {
	c := t.counterOf(e)
	i, found := slices.BinarySearchFunc(t.cs, c, func(a, b topCounter) int { return t.compare(&a, &b) })
	if found {
		t.cs[i].n++
		return
	}
	t.cs = slices.Insert(t.cs, i, c)
	if len(t.cs) > TopKExactMax {
		t.purge()
	}
}

// purge subtracts the (TopKKept+1)-th largest count from every counter,
// drops those left at zero or below and adds the cut to err. It is a
// function of the counters alone.
func (t *topK) purge() {
	ns := make([]int64, len(t.cs))
	for i, c := range t.cs {
		ns[i] = c.n
	}
	slices.SortFunc(ns, func(a, b int64) int { return cmp.Compare(b, a) })
	cut := ns[TopKKept]
	out := t.cs[:0]
	for _, c := range t.cs {
		if c.n > cut {
			c.n -= cut
			out = append(out, c)
		}
	}
	clear(t.cs[len(out):])
	t.cs = out
	t.err += cut
}

// merge adds o's counters to t's (a linear merge of the sorted lists),
// then purges if t holds more than TopKExactMax. It is commutative.
func (t *topK) merge(o *topK) {
	out := make([]topCounter, 0, len(t.cs)+len(o.cs))
	i, j := 0, 0
	for i < len(t.cs) || j < len(o.cs) {
		switch {
		case j == len(o.cs):
			out = append(out, t.cs[i])
			i++
		case i == len(t.cs):
			out = append(out, o.cs[j])
			j++
		default:
			switch c := t.compare(&t.cs[i], &o.cs[j]); {
			case c < 0:
				out = append(out, t.cs[i])
				i++
			case c > 0:
				out = append(out, o.cs[j])
				j++
			default:
				m := t.cs[i]
				m.n += o.cs[j].n
				out = append(out, m)
				i, j = i+1, j+1
			}
		}
	}
	t.cs = out
	t.err += o.err
	if len(t.cs) > TopKExactMax {
		t.purge()
	}
}

func (t *topK) clone() *topK {
	c := *t
	c.cs = slices.Clone(t.cs)
	return &c
}

// top returns the k counters with the largest counts, ties by value
// ascending, in a new slice.
func (t *topK) top(k int) []topCounter {
	out := slices.Clone(t.cs)
	slices.SortStableFunc(out, func(a, b topCounter) int { return cmp.Compare(b.n, a.n) }) // stable: by value within a count
	return out[:min(k, len(out))]
}

// TopCount is one entry of a top_k value over a number field: a value and
// how often it occurs in the window.
type TopCount struct {
	Value float64
	Count int64
}

// TopString is one entry of a top_k value over a string field.
type TopString struct {
	Value string
	Count int64
}

// FinalizeTopK turns the IR of a number TopK feature into its value: at
// most k values with their counts, the most frequent first, ties by value
// ascending (false before true for a boolean field). While the window has
// at most TopKExactMax distinct values (TopKError(ir) == 0) the counts are
// exact; beyond, each count is at most TopKError(ir) <= Count/(TopKKept+1)
// below the true one, every value more frequent than that is listed (k
// permitting), and the list may hold fewer than k values (none, when no
// value stands out). ok=false means null: an empty window, an IR without
// the summary (its window was not made by Window.For(TopK, ...)), a string
// IR (use FinalizeStringTopK) or k < 1. The slice is new on every call.
func FinalizeTopK(ir IR, k int) (values []TopCount, ok bool) {
	if ir.Count == 0 || ir.tk == nil || ir.tk.strs || k < 1 {
		return nil, false
	}
	top := ir.tk.top(k)
	out := make([]TopCount, len(top))
	for i, c := range top {
		out[i] = TopCount{Value: c.v, Count: c.n}
	}
	return out, true
}

// FinalizeStringTopK is FinalizeTopK for a string feature (a window made
// WithStrings): ties by value in byte order. ok=false means null: an empty
// window, an IR without the summary or of a number feature, or k < 1.
func FinalizeStringTopK(ir IR, k int) (values []TopString, ok bool) {
	if ir.Count == 0 || ir.tk == nil || !ir.tk.strs || k < 1 {
		return nil, false
	}
	top := ir.tk.top(k)
	out := make([]TopString, len(top))
	for i, c := range top {
		out[i] = TopString{Value: c.s, Count: c.n}
	}
	return out, true
}

// TopKError is the largest amount by which a count FinalizeTopK or
// FinalizeStringTopK gives for ir may be below the true count: 0 while the
// counts are exact (at most TopKExactMax distinct values), otherwise at most
// ir.Count/(TopKKept+1). It is 0 for an IR without a top_k summary.
func TopKError(ir IR) int64 {
	if ir.tk == nil {
		return 0
	}
	return ir.tk.err
}

// TopKValues is the values of FinalizeTopK(ir, k) without their counts,
// most frequent first (what feature statistics observe of a top_k value).
func TopKValues(ir IR, k int) ([]float64, bool) {
	l, ok := FinalizeTopK(ir, k)
	if !ok {
		return nil, false
	}
	out := make([]float64, len(l))
	for i, c := range l {
		out[i] = c.Value
	}
	return out, true
}

// TopKStrings is TopKValues for a string feature (FinalizeStringTopK).
func TopKStrings(ir IR, k int) ([]string, bool) {
	l, ok := FinalizeStringTopK(ir, k)
	if !ok {
		return nil, false
	}
	out := make([]string, len(l))
	for i, c := range l {
		out[i] = c.Value
	}
	return out, true
}

// TopValue is one entry of a top_k value of a field of any type, as the
// read paths carry it: Value for a number field (a long, or a boolean as 0
// or 1, is told from a double by the feature's output type), Str for a
// string field, and how often it occurs in the window.
type TopValue struct {
	Value float64
	Str   string
	Count int64
}

// FinalizeTopValues is FinalizeTopK, or FinalizeStringTopK when w keeps
// strings, as TopValues: the value of a top_k feature of window w over ir
// (k is w.K()). The slice is new on every call.
func FinalizeTopValues(w Window, ir IR) ([]TopValue, bool) {
	if w.Strings() {
		l, ok := FinalizeStringTopK(ir, w.K())
		if !ok {
			return nil, false
		}
		out := make([]TopValue, len(l))
		for i, c := range l {
			out[i] = TopValue{Str: c.Value, Count: c.Count}
		}
		return out, true
	}
	l, ok := FinalizeTopK(ir, w.K())
	if !ok {
		return nil, false
	}
	out := make([]TopValue, len(l))
	for i, c := range l {
		out[i] = TopValue{Value: c.Value, Count: c.Count}
	}
	return out, true
}
