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
}

// Kinds returns every valid Kind, in declaration order. The slice is new on every
// call and may be modified by the caller.
func Kinds() []Kind {
	return []Kind{Count, Sum, Avg, Min, Max, Last}
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
// "min", "max", "last"). Names are case-sensitive. The error wraps ErrUnknownKind and
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
func (k Kind) Valid() bool { return k >= Count && k <= Last }

// NeedsField reports whether the aggregation reads an event field: false only for
// Count, which ignores Event.Value.
func (k Kind) NeedsField() bool { return k != Count }

// EmptyIsZero reports whether an empty window has the value 0 (Count and Sum)
// rather than null (Avg, Min, Max, Last).
func (k Kind) EmptyIsZero() bool { return k == Count || k == Sum }
