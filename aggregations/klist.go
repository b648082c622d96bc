package aggregations

import "sort"

// MaxK is the largest k of first_k and last_k: a tile keeps at most k events
// (40 bytes each in memory, at most about 18 bytes each encoded, plus the
// string and its length for a string feature), so a
// window of n tiles holds at most n*k events before Finalize.
const MaxK = 1000

// kList keeps the k first (FirstK) or the k last (LastK) events folded into
// an IR, best first: for LastK the largest (TS, Seq, Value) first (newest
// first), for FirstK the smallest first. Ties on (TS, Seq) are ordered as
// First and Last break them (laterThan, earlierThan), so the list is a
// function of the set of events, whatever the order of updates and merges.
//
// Invariant: 1 <= k <= MaxK and len(evs) == min(k, Count of its IR).
type kList struct {
	k    int
	last bool
	evs  []Event
}

// before reports whether a comes before b in the list. Full ties on (TS,
// Seq, Value) are broken by Str (the larger is later), so string lists are
// a function of their set of events too.
func (l *kList) before(a, b *Event) bool {
	if l.last {
		return laterStr(a.TS, a.Seq, a.Value, a.Str, b.TS, b.Seq, b.Value, b.Str)
	}
	return laterStr(b.TS, b.Seq, b.Value, b.Str, a.TS, a.Seq, a.Value, a.Str)
}

// add folds e in: O(log k) to find its place, O(k) to shift; nothing when
// the list is full and e comes after its last event.
func (l *kList) add(e Event) {
	n := len(l.evs)
	if n == l.k && !l.before(&e, &l.evs[n-1]) {
		return
	}
	i := sort.Search(n, func(i int) bool { return l.before(&e, &l.evs[i]) })
	if n < l.k {
		l.evs = append(l.evs, e)
	}
	copy(l.evs[i+1:], l.evs[i:len(l.evs)-1])
	l.evs[i] = e
}

// merge folds o's events into l, keeping the first max(l.k, o.k) of both
// lists (the k of one feature's IRs are equal). o must keep the same end
// (first or last) as l.
func (l *kList) merge(o *kList) {
	k := max(l.k, o.k)
	out := make([]Event, 0, min(k, len(l.evs)+len(o.evs)))
	i, j := 0, 0
	for len(out) < k && (i < len(l.evs) || j < len(o.evs)) {
		if j == len(o.evs) || (i < len(l.evs) && !l.before(&o.evs[j], &l.evs[i])) {
			out = append(out, l.evs[i])
			i++
		} else {
			out = append(out, o.evs[j])
			j++
		}
	}
	l.k, l.evs = k, out
}

func (l *kList) clone() *kList {
	c := *l
	c.evs = append([]Event(nil), l.evs...)
	return &c
}

// values returns the list's values, best first, in a new slice.
func (l *kList) values() []float64 {
	out := make([]float64, len(l.evs))
	for i, e := range l.evs {
		out[i] = e.Value
	}
	return out
}

// FinalizeList turns an IR into the value of a list aggregation (FirstK,
// LastK): the values of the k earliest events, oldest first (FirstK), or of
// the k latest, newest first (LastK), ordered by (event time, Seq) as First
// and Last are. ok=false means null: an empty window, an IR without the list
// k needs (its window was not made by Window.For(k, ...)), or a k that is not
// a list kind. The slice is new on every call.
func FinalizeList(k Kind, ir IR) (values []float64, ok bool) {
	if !k.List() || ir.Count == 0 || ir.ks == nil || ir.ks.last != (k == LastK) {
		return nil, false
	}
	return ir.ks.values(), true
}

// FinalizeStringList is FinalizeList for a string feature (a window made
// WithStrings): the strings of the k earliest events, oldest first
// (FirstK), or of the k latest, newest first (LastK). ok=false means null:
// an empty window, an IR without strings or without the list, or a k that is
// not a list kind. The slice is new on every call.
func FinalizeStringList(k Kind, ir IR) (values []string, ok bool) {
	if !k.List() || ir.Count == 0 || ir.s == nil || ir.ks == nil || ir.ks.last != (k == LastK) {
		return nil, false
	}
	out := make([]string, len(ir.ks.evs))
	for i, e := range ir.ks.evs {
		out[i] = e.Str
	}
	return out, true
}
