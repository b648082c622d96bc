package aggregations

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is an aggregation function. The zero Kind is invalid.
type Kind uint8

// The aggregation kinds, in the order Kinds returns them.
const (
	// Count is the number of events in the window; empty windows give 0.
	Count Kind = iota + 1
	// Sum is the sum of the events' values; empty windows give 0.
	Sum
	// Avg is the mean of the events' values; empty windows give null.
	Avg
	// Min is the smallest value; empty windows give null.
	Min
	// Max is the largest value; empty windows give null.
	Max
	// Last is the value of the event with the latest event time (ties: larger Seq
	// wins); empty windows give null.
	Last
	// Variance is the population variance (the mean squared deviation from the
	// mean, divided by n); empty windows give null.
	Variance
	// Stddev is the square root of Variance; empty windows give null.
	Stddev
	// VarianceSamp is the sample variance (divided by n-1); windows with fewer
	// than two events give null.
	VarianceSamp
	// StddevSamp is the square root of VarianceSamp; windows with fewer than two
	// events give null.
	StddevSamp
	// First is the value of the event with the earliest event time (ties: the
	// smaller Seq, i.e. the earlier offset, wins); empty windows give null.
	First
	// ApproxDistinct is the number of distinct values: exact up to
	// DistinctExactMax of them, beyond a HyperLogLog estimate (standard error
	// 1.04/sqrt(4096) = 1.625%, see hll.go); empty windows give 0. It needs a
	// Window made with For(ApproxDistinct, 0). Its field may also be a
	// boolean or a string (see Accepts; a string is counted by its 64-bit
	// hash, see hll.go for the collision error).
	ApproxDistinct
	// ApproxPercentile estimates a quantile with a DDSketch-style log-bucket
	// sketch of relative accuracy 1% (see quantiles.go); empty windows give
	// null. It needs a Window made with For(ApproxPercentile, p).
	ApproxPercentile
	// FirstK is the list of the values of the k earliest events, oldest
	// first (ties on event time: the smaller Seq first, as First); empty
	// windows give null. It needs a Window made with For(FirstK, 0).WithK(k).
	// Its value comes from FinalizeList.
	FirstK
	// LastK is the list of the values of the k latest events, newest first
	// (ties on event time: the larger Seq first, as Last); empty windows give
	// null. It needs a Window made with For(LastK, 0).WithK(k). Its value
	// comes from FinalizeList.
	LastK
	// TopK is the list of the k most frequent values with their counts, the
	// most frequent first (ties: the smaller value first; strings in byte
	// order, false before true); empty windows give null. It is exact while
	// the window has at most TopKExactMax distinct values; beyond, a
	// Misra-Gries summary undercounts each count by at most N/(TopKKept+1)
	// for N events (see topk.go). It needs a Window made with For(TopK,
	// 0).WithK(k). Its value comes from FinalizeTopK (FinalizeStringTopK for
	// a string field).
	TopK
)

// ErrUnknownKind is wrapped by ParseKind errors.
var ErrUnknownKind = errors.New("aggregations: unknown aggregation")

var kindNames = [...]string{
	Count: "count",
	Sum:   "sum",
	Avg:   "avg",
	Min:   "min",
	Max:   "max",
	Last:  "last",

	Variance:         "variance",
	Stddev:           "stddev",
	VarianceSamp:     "variance_samp",
	StddevSamp:       "stddev_samp",
	First:            "first",
	ApproxDistinct:   "approx_distinct",
	ApproxPercentile: "approx_percentile",
	FirstK:           "first_k",
	LastK:            "last_k",
	TopK:             "top_k",
}

// Kinds returns every valid Kind, in declaration order. The slice is new on every
// call and may be modified by the caller.
func Kinds() []Kind {
	return []Kind{Count, Sum, Avg, Min, Max, Last, Variance, Stddev, VarianceSamp, StddevSamp, First, ApproxDistinct, ApproxPercentile, FirstK, LastK, TopK}
}

// KindNames returns the names ParseKind accepts, in the order of Kinds.
func KindNames() []string {
	names := make([]string, 0, len(kindNames)-1)
	for _, k := range Kinds() {
		names = append(names, k.String())
	}
	return names
}

// ParseKind parses the lower-case name of an aggregation ("count", "sum", "avg",
// "min", "max", "last", "variance", "stddev", "variance_samp", "stddev_samp",
// "first", "approx_distinct", "approx_percentile", "first_k", "last_k",
// "top_k"). Names are case-sensitive. The error wraps ErrUnknownKind and
// lists the allowed names.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w %q: want one of %s", ErrUnknownKind, s, strings.Join(KindNames(), ", "))
}

// String returns the name ParseKind accepts, or "Kind(n)" for an invalid Kind.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Valid reports whether k is one of the declared kinds.
func (k Kind) Valid() bool { return k >= Count && k <= TopK }

// NeedsField reports whether the aggregation reads an event field: false only for
// Count, which ignores Event.Value.
func (k Kind) NeedsField() bool { return k != Count }

// EmptyIsZero reports whether an empty window has the value 0 (Count, Sum and
// ApproxDistinct) rather than null (every other kind).
func (k Kind) EmptyIsZero() bool { return k == Count || k == Sum || k == ApproxDistinct }

// NeedsPercentile reports whether the aggregation takes a percentile (0 < p <
// 1): true only for ApproxPercentile.
func (k Kind) NeedsPercentile() bool { return k == ApproxPercentile }

// Approximate reports whether the aggregation may be estimated by a sketch
// (ApproxDistinct, ApproxPercentile; TopK beyond TopKExactMax distinct
// values) rather than computed exactly.
func (k Kind) Approximate() bool { return k == ApproxDistinct || k == ApproxPercentile || k == TopK }

// List reports whether the aggregation's value is a list of values (FirstK,
// LastK; see FinalizeList) rather than one number. TopK's value, a list of
// (value, count) pairs, is not: see FinalizeTopK.
func (k Kind) List() bool { return k == FirstK || k == LastK }

// NeedsK reports whether the aggregation takes k (1 <= k <= MaxK): true for
// FirstK, LastK and TopK.
func (k Kind) NeedsK() bool { return k.List() || k == TopK }
