package aggregations

import "sort"

// MaxK is the largest k of first_k and last_k: a tile keeps at most k events
// (24 bytes each in memory, at most about 18 bytes each encoded, plus the
// string and its length for a string feature), so a window of n tiles holds
// at most n*k events before Finalize.
const MaxK = 1000

// kList keeps the k first (FirstK) or the k last (LastK) events folded into
// an IR, best first: for LastK the largest (TS, Seq, Value) first (newest
// first), for FirstK the smallest first. Ties on (TS, Seq) are ordered as
// First and Last break them (laterThan, earlierThan), so the list is a
// function of the set of events, whatever the order of updates and merges.
//
// The events' strings (a window made WithStrings) are kept beside them in
// strs, so that number features keep 24-byte events (an Event with its Str
// is 40 bytes: it cost first_k and last_k of numbers 10-20%).
//
// Invariant: 1 <= k <= MaxK and len(evs) == min(k, Count of its IR);
// strs is nil, or parallel to evs (len(strs) == len(evs)) when the list
// keeps strings.
type kList struct {
	k    int
	last bool
	evs  []kEvent
	strs []string
}

// kEvent is a listed event without its string (see kList.strs).
type kEvent struct {
	TS, Seq int64
	Value   float64
}

// str is the string of listed event i, "" when the list keeps none.
func (l *kList) str(i int) string {
	if l.strs == nil {
		return ""
	}
	return l.strs[i]
}

// before reports whether event a (with string as) comes before b (with
// string bs) in the list. Full ties on (TS, Seq, Value) are broken by the
// string (the larger is later), so string lists are a function of their
// set of events too.
func (l *kList) before(a *kEvent, as string, b *kEvent, bs string) bool {
	if l.last {
		return laterStr(a.TS, a.Seq, a.Value, as, b.TS, b.Seq, b.Value, bs)
	}
	return laterStr(b.TS, b.Seq, b.Value, bs, a.TS, a.Seq, a.Value, as)
}

// add folds e in: O(log k) to find its place, O(k) to shift; nothing when
// the list is full and e comes after its last event. e.Str is kept when
// the list keeps strings, ignored otherwise.
func (l *kList) add(e Event) {
	ke, s := kEvent{e.TS, e.Seq, e.Value}, ""
	if l.strs != nil {
		s = e.Str
	}
	n := len(l.evs)
	if n == l.k && !l.before(&ke, s, &l.evs[n-1], l.str(n-1)) {
		return
	}
	i := sort.Search(n, func(i int) bool { return l.before(&ke, s, &l.evs[i], l.str(i)) })
	if n < l.k {
		l.evs = append(l.evs, ke)
		if l.strs != nil {
			l.strs = append(l.strs, s)
		}
	}
	copy(l.evs[i+1:], l.evs[i:len(l.evs)-1])
	l.evs[i] = ke
	if l.strs != nil {
		copy(l.strs[i+1:], l.strs[i:len(l.strs)-1])
		l.strs[i] = s
	}
}

// merge folds o's events into l, keeping the first max(l.k, o.k) of both
// lists (the k of one feature's IRs are equal). o must keep the same end
// (first or last) as l. The result keeps strings when either list does.
func (l *kList) merge(o *kList) {
	k := max(l.k, o.k)
	n := min(k, len(l.evs)+len(o.evs))
	out := make([]kEvent, 0, n)
	var outS []string
	if l.strs != nil || o.strs != nil {
		outS = make([]string, 0, n)
	}
	i, j := 0, 0
	for len(out) < k && (i < len(l.evs) || j < len(o.evs)) {
		if j == len(o.evs) || (i < len(l.evs) && !l.before(&o.evs[j], o.str(j), &l.evs[i], l.str(i))) {
			out = append(out, l.evs[i])
			if outS != nil {
				outS = append(outS, l.str(i))
			}
			i++
		} else {
			out = append(out, o.evs[j])
			if outS != nil {
				outS = append(outS, o.str(j))
			}
			j++
		}
	}
	l.k, l.evs, l.strs = k, out, outS
}

func (l *kList) clone() *kList {
	c := *l
	c.evs = append([]kEvent(nil), l.evs...)
	if l.strs != nil {
		c.strs = append([]string(nil), l.strs...)
	}
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
	for i := range out {
		out[i] = ir.ks.str(i)
	}
	return out, true
}
