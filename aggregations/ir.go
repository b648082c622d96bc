package aggregations

// Event is one input to an aggregation.
type Event struct {
	// TS is the event time in epoch milliseconds.
	TS int64
	// Seq breaks ties on TS for Last: the larger Seq wins. Build it with
	// Seq(partition, offset) from the record's source partition and offset.
	Seq int64
	// Value is the aggregated field; Count ignores it. Callers reject NaN and
	// infinities upstream: they would poison Sum, Min and Max.
	Value float64
}

// IR is the intermediate representation shared by every Kind: a fixed-size value
// that is updated with events, merged with other IRs and finalized into a value.
// Avg is Sum/Count. Update and Merge never allocate.
//
// Invariant: an IR with Count == 0 is empty and all its other fields are zero;
// when Count > 0, (LastTS, LastSeq) is the largest (TS, Seq) folded in and Last
// is that event's value.
type IR struct {
	Count               int64
	Sum, Min, Max, Last float64
	LastTS, LastSeq     int64
}

// Update folds e into ir.
func (ir *IR) Update(e Event) {
	if ir.Count == 0 {
		*ir = IR{Count: 1, Sum: e.Value, Min: e.Value, Max: e.Value, Last: e.Value, LastTS: e.TS, LastSeq: e.Seq}
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
	if laterThan(e.TS, e.Seq, e.Value, ir.LastTS, ir.LastSeq, ir.Last) {
		ir.Last, ir.LastTS, ir.LastSeq = e.Value, e.TS, e.Seq
	}
}

// Merge folds o into ir. Merge is commutative and associative (Sum up to
// floating-point rounding); merging an empty IR is a no-op and merging into an
// empty IR copies o.
func (ir *IR) Merge(o IR) {
	if o.Count == 0 {
		return
	}
	if ir.Count == 0 {
		*ir = o
		return
	}
	ir.Count += o.Count
	ir.Sum += o.Sum
	if o.Min < ir.Min {
		ir.Min = o.Min
	}
	if o.Max > ir.Max {
		ir.Max = o.Max
	}
	if laterThan(o.LastTS, o.LastSeq, o.Last, ir.LastTS, ir.LastSeq, ir.Last) {
		ir.Last, ir.LastTS, ir.LastSeq = o.Last, o.LastTS, o.LastSeq
	}
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

// Empty reports whether no event was folded into ir (Count == 0).
func (ir IR) Empty() bool { return ir.Count == 0 }

// Finalize turns an IR into the value of aggregation k. ok=false means null: an
// empty window for Avg, Min, Max and Last, or an invalid k. Count and Sum of an
// empty window are 0 with ok=true.
func Finalize(k Kind, ir IR) (value float64, ok bool) {
	switch k {
	case Count:
		return float64(ir.Count), true
	case Sum:
		if ir.Count == 0 {
			return 0, true
		}
		return ir.Sum, true
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
	}
	return 0, false
}
