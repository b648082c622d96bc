package aggregations

import "math"

// Event is one input to an aggregation.
type Event struct {
	// TS is the event time in epoch milliseconds.
	TS int64
	// Seq breaks ties on TS for Last and First: the larger Seq is later. Build it
	// with Seq(partition, offset) from the record's source partition and offset.
	Seq int64
	// Value is the aggregated field; Count ignores it. Callers reject NaN and
	// infinities upstream: they would poison Sum, Min and Max.
	Value float64
	// Str is the value of a string field, for the kinds that keep values
	// (Last, First, FirstK, LastK) over a window made WithStrings; every
	// other IR ignores it (number features leave it empty and pay nothing
	// for it but its 16 bytes in Pending; k lists keep strings beside
	// their events, only for string windows). "" is a value like any
	// other.
	Str string
	// Bucket is the event's bucket key for a window made WithBuckets (the
	// decoder's text of the `bucket:` field, see bucket.go); every other
	// window ignores it. "" is a bucket like any other.
	Bucket string
}

// IR is the intermediate representation shared by every Kind: a value that is
// updated with events, merged with other IRs and finalized into a value. Avg is
// Sum/Count; the variances come from (Count, Mean, M2), merged with Chan et al.'s
// parallel formula, which stays accurate where the sum of squares would cancel
// (values like 1e9+0.1).
//
// The exact fields are updated for every kind; Update and Merge of an IR without
// a sketch never allocate. The sketches of ApproxDistinct and ApproxPercentile,
// the event lists of FirstK and LastK (at most k events) and the value counts
// of TopK (at most TopKExactMax, see topk.go) are behind
// pointers, allocated only for IRs created through a Window made by
// Window.For of those kinds (Series.Apply, Read and Expire pass the window). An
// IR owns its sketch: copying an IR by assignment shares it, so only one of the
// copies may be updated; Merge into an empty IR copies the other's sketch.
// The string part of a window made WithStrings is the same: one small
// allocation when the IR gets its first event (or is merged into while
// empty), owned by the IR, copied by Clone and Merge.
//
// Invariant: an IR with Count == 0 is empty and all its other fields are zero
// (no sketch); when Count > 0, (LastTS, LastSeq) is the largest (TS, Seq) folded
// in and Last is that event's value, (FirstTS, FirstSeq) the smallest and First
// its value, Mean the mean and M2 the sum of squared deviations from it, a
// sketch, when present, has seen exactly the Count values, and the string
// part, present exactly when the window was made WithStrings, holds the Str of
// the Last and First events (ties on (TS, Seq, Value) broken by Str).
type IR struct {
	Count               int64
	Sum, Min, Max, Last float64
	LastTS, LastSeq     int64
	Mean, M2            float64
	First               float64
	FirstTS, FirstSeq   int64

	hll *hll       // ApproxDistinct only
	qs  *quantiles // ApproxPercentile only
	ks  *kList     // FirstK, LastK only
	tk  *topK      // TopK only
	s   *strPart   // windows made WithStrings only
	bk  *bucketSet // windows made WithBuckets only (see bucket.go)
}

// strPart is the string side of an IR over a string field: the Str of the
// events Last and First stand for. It exists exactly when the IR is
// non-empty and its window was made WithStrings, so number features keep
// their path and their encoding unchanged.
type strPart struct {
	last, first string
}

// Update folds e into ir, and into ir's sketch if it has one. An empty IR gets
// no sketch from Update: Series.Apply creates the sketch its window asks for.
func (ir *IR) Update(e Event) { ir.update(e, Window{}) }

// update folds e into ir; an empty ir gets the sketch w asks for.
func (ir *IR) update(e Event, w Window) {
	if w.sketch&withBuckets != 0 || ir.bk != nil {
		ir.updateBucketed(e, w)
		return
	}
	if ir.Count == 0 {
		*ir = IR{Count: 1, Sum: e.Value, Min: e.Value, Max: e.Value, Last: e.Value, LastTS: e.TS, LastSeq: e.Seq,
			Mean: e.Value, First: e.Value, FirstTS: e.TS, FirstSeq: e.Seq}
		switch w.kind() {
		case hllSketch:
			ir.hll = &hll{}
			ir.hll.add(e.Value)
		case quantileSketch:
			ir.qs = &quantiles{q: w.quantile}
			ir.qs.add(e.Value)
		case firstKList, lastKList:
			// An invalid k (Validate rejects it) is clamped: no panic.
			k := min(max(w.k, 1), MaxK)
			ir.ks = &kList{k: k, last: w.kind() == lastKList, evs: make([]kEvent, 1, min(k, 8))}
			ir.ks.evs[0] = kEvent{e.TS, e.Seq, e.Value}
			if w.sketch&withStrings != 0 {
				ir.ks.strs = make([]string, 1, min(k, 8))
				ir.ks.strs[0] = e.Str
			}
		case topKSketch:
			ir.tk = &topK{strs: w.sketch&withStrings != 0}
			ir.tk.add(e)
		}
		if w.sketch&withStrings != 0 {
			ir.s = &strPart{last: e.Str, first: e.Str}
		}
		return
	}
	ir.Count++
	ir.Sum += e.Value
	if e.Value < ir.Min {
		ir.Min = e.Value
	}
	if e.Value > ir.Max {
		ir.Max = e.Value
	}
	if ir.s != nil {
		ir.s.update(ir, e.TS, e.Seq, e.Value, e.Str, e.TS, e.Seq, e.Value, e.Str)
	} else {
		if laterThan(e.TS, e.Seq, e.Value, ir.LastTS, ir.LastSeq, ir.Last) {
			ir.Last, ir.LastTS, ir.LastSeq = e.Value, e.TS, e.Seq
		}
		if earlierThan(e.TS, e.Seq, e.Value, ir.FirstTS, ir.FirstSeq, ir.First) {
			ir.First, ir.FirstTS, ir.FirstSeq = e.Value, e.TS, e.Seq
		}
	}
	// Welford: d*(x - new mean) is never negative, so M2 stays >= 0.
	d := e.Value - ir.Mean
	ir.Mean += d / float64(ir.Count)
	ir.M2 += d * (e.Value - ir.Mean)
	if ir.hll != nil {
		ir.hll.add(e.Value)
	}
	if ir.qs != nil {
		ir.qs.add(e.Value)
	}
	if ir.ks != nil {
		ir.ks.add(e)
	}
	if ir.tk != nil {
		ir.tk.add(e)
	}
}

// Merge folds o into ir. Merge is commutative (bit for bit) and associative
// (Sum, Mean and M2 up to floating-point rounding; the sketches exactly);
// merging an empty IR is a no-op and merging into an empty IR copies o, with a
// copy of its sketch (ir never shares o's).
func (ir *IR) Merge(o IR) { ir.merge(&o) }

// merge is Merge without copying o (Series.Read merges every tile of a window).
func (ir *IR) merge(o *IR) {
	if o.Count == 0 {
		return
	}
	if ir.Count == 0 {
		*ir = *o
		if o.hll != nil {
			ir.hll = o.hll.clone()
		}
		if o.qs != nil {
			ir.qs = o.qs.clone()
		}
		if o.ks != nil {
			ir.ks = o.ks.clone()
		}
		if o.tk != nil {
			ir.tk = o.tk.clone()
		}
		if o.s != nil {
			c := *o.s
			ir.s = &c
		}
		if o.bk != nil {
			ir.bk = o.bk.clone()
		}
		return
	}
	// Chan et al.: combine from the larger part (by count, then mean) so that
	// the result does not depend on which side is the receiver.
	big, small := ir, o
	if o.Count > ir.Count || (o.Count == ir.Count && o.Mean > ir.Mean) {
		big, small = o, ir
	}
	n := ir.Count + o.Count
	d := small.Mean - big.Mean
	f := float64(small.Count) / float64(n)
	mean := big.Mean + d*f
	m2 := big.M2 + small.M2 + d*d*float64(big.Count)*f
	ir.Mean, ir.M2 = mean, m2

	ir.Count = n
	ir.Sum += o.Sum
	if o.Min < ir.Min {
		ir.Min = o.Min
	}
	if o.Max > ir.Max {
		ir.Max = o.Max
	}
	switch {
	case ir.s != nil && o.s != nil:
		ir.s.update(ir, o.LastTS, o.LastSeq, o.Last, o.s.last, o.FirstTS, o.FirstSeq, o.First, o.s.first)
	default:
		// Number IRs; a string IR merged with a number one (never within one
		// feature) keeps its own strings.
		if laterThan(o.LastTS, o.LastSeq, o.Last, ir.LastTS, ir.LastSeq, ir.Last) {
			ir.Last, ir.LastTS, ir.LastSeq = o.Last, o.LastTS, o.LastSeq
		}
		if earlierThan(o.FirstTS, o.FirstSeq, o.First, ir.FirstTS, ir.FirstSeq, ir.First) {
			ir.First, ir.FirstTS, ir.FirstSeq = o.First, o.FirstTS, o.FirstSeq
		}
	}
	switch {
	case o.hll == nil:
	case ir.hll == nil:
		ir.hll = o.hll.clone()
	default:
		ir.hll.merge(o.hll)
	}
	switch {
	case o.qs == nil:
	case ir.qs == nil:
		ir.qs = o.qs.clone()
	default:
		ir.qs.merge(o.qs)
	}
	switch {
	case o.ks == nil:
	case ir.ks == nil:
		ir.ks = o.ks.clone()
	default:
		ir.ks.merge(o.ks)
	}
	switch {
	case o.tk == nil:
	case ir.tk == nil:
		ir.tk = o.tk.clone()
	default:
		ir.tk.merge(o.tk)
	}
	switch {
	case o.bk == nil:
	case ir.bk == nil:
		ir.bk = o.bk.clone()
	default:
		ir.bk.merge(o.bk)
	}
}

// Clone returns a copy of ir with its own copy of ir's sketch, if any: the
// copy and ir may then be updated independently. Without a sketch it is a
// plain copy and does not allocate.
func (ir IR) Clone() IR {
	if ir.hll != nil {
		ir.hll = ir.hll.clone()
	}
	if ir.qs != nil {
		ir.qs = ir.qs.clone()
	}
	if ir.ks != nil {
		ir.ks = ir.ks.clone()
	}
	if ir.tk != nil {
		ir.tk = ir.tk.clone()
	}
	if ir.s != nil {
		c := *ir.s
		ir.s = &c
	}
	if ir.bk != nil {
		ir.bk = ir.bk.clone()
	}
	return ir
}

// update makes the candidate (lts, lseq, lv, ls) ir's Last when it is later
// and (fts, fseq, fv, fs) its First when it is earlier, as the number path
// does, breaking full ties on (ts, seq, value) by the string (the larger is
// later), so that Merge stays commutative.
func (p *strPart) update(ir *IR, lts, lseq int64, lv float64, ls string, fts, fseq int64, fv float64, fs string) {
	if laterStr(lts, lseq, lv, ls, ir.LastTS, ir.LastSeq, ir.Last, p.last) {
		ir.Last, ir.LastTS, ir.LastSeq, p.last = lv, lts, lseq, ls
	}
	if laterStr(ir.FirstTS, ir.FirstSeq, ir.First, p.first, fts, fseq, fv, fs) {
		ir.First, ir.FirstTS, ir.FirstSeq, p.first = fv, fts, fseq, fs
	}
}

// laterStr is laterThan with the string as the last tie-breaker.
func laterStr(ts, seq int64, v float64, s string, ts0, seq0 int64, v0 float64, s0 string) bool {
	switch {
	case ts != ts0:
		return ts > ts0
	case seq != seq0:
		return seq > seq0
	case v != v0:
		return v > v0
	}
	return s > s0
}

// laterThan orders candidates for Last by (ts, seq), and by value when both are
// equal (the same record seen twice), so that Merge stays commutative.
func laterThan(ts, seq int64, v float64, ts0, seq0 int64, v0 float64) bool {
	if ts != ts0 {
		return ts > ts0
	}
	if seq != seq0 {
		return seq > seq0
	}
	return v > v0
}

// earlierThan orders candidates for First by (ts, seq), and by the smaller
// value when both are equal, mirroring laterThan.
func earlierThan(ts, seq int64, v float64, ts0, seq0 int64, v0 float64) bool {
	if ts != ts0 {
		return ts < ts0
	}
	if seq != seq0 {
		return seq < seq0
	}
	return v < v0
}

// FinalizeString turns the IR of a string feature (a window made
// WithStrings) into the value of Last or First: the string of the latest
// (earliest) event, ordered by (event time, Seq) as for numbers. ok=false
// means null: an empty window, an IR without strings, or another kind.
func FinalizeString(k Kind, ir IR) (value string, ok bool) {
	if ir.Count == 0 || ir.s == nil {
		return "", false
	}
	switch k {
	case Last:
		return ir.s.last, true
	case First:
		return ir.s.first, true
	}
	return "", false
}

// Empty reports whether no event was folded into ir (Count == 0).
func (ir IR) Empty() bool { return ir.Count == 0 }

// Finalize turns an IR into the value of aggregation k (for the list kinds,
// FirstK and LastK, it gives null: use FinalizeList; for TopK too: use
// FinalizeTopK). ok=false means null: an
// empty window for every kind but Count, Sum and ApproxDistinct (which give 0), a
// window of fewer than two events for VarianceSamp and StddevSamp, an IR without
// the sketch k needs (its series' window was not made by Window.For(k, ...)), or
// an invalid k. ApproxDistinct is rounded to a whole number and never exceeds
// Count; ApproxPercentile answers the percentile its window was made for.
func Finalize(k Kind, ir IR) (value float64, ok bool) {
	switch k {
	case Count:
		return float64(ir.Count), true
	case Sum:
		if ir.Count == 0 {
			return 0, true
		}
		return ir.Sum, true
	case ApproxDistinct:
		if ir.Count == 0 {
			return 0, true
		}
		if ir.hll == nil {
			return 0, false
		}
		return math.Min(math.Max(1, math.Round(ir.hll.estimate())), float64(ir.Count)), true
	}
	if ir.Count == 0 {
		return 0, false
	}
	switch k {
	case Avg:
		return ir.Sum / float64(ir.Count), true
	case Min:
		return ir.Min, true
	case Max:
		return ir.Max, true
	case Last:
		return ir.Last, true
	case First:
		return ir.First, true
	case Variance:
		return ir.M2 / float64(ir.Count), true
	case Stddev:
		return math.Sqrt(ir.M2 / float64(ir.Count)), true
	case VarianceSamp, StddevSamp:
		if ir.Count < 2 {
			return 0, false
		}
		v := ir.M2 / float64(ir.Count-1)
		if k == StddevSamp {
			v = math.Sqrt(v)
		}
		return v, true
	case ApproxPercentile:
		if ir.qs == nil {
			return 0, false
		}
		return ir.qs.quantile(ir.qs.q)
	}
	return 0, false
}
