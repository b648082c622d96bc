package aggregations

import (
	"fmt"
	"strings"
)

// ValueType is the type of a feature's input values: the Avro type of its
// field in the source's schema, grouped by what the aggregations can do with
// it. The zero ValueType is TypeDouble, the type of count (which reads no
// field) and of every numeric value before this distinction existed.
//
// Every event value reaches an IR as a float64 (Event.Value). For the types
// other than TypeDouble the decoder (pipeline/events) defines the float64:
// for approx_distinct of a long, boolean or string field it is a float64
// whose bits identify the value (see Kind.Accepts), only ever hashed, never
// added or compared. The string values of Last, First, FirstK, LastK and
// TopK features reach their IRs as Event.Str (Value 0) over a window made
// WithStrings, and are read with FinalizeString, FinalizeStringList and
// FinalizeStringTopK: every read path (lookup, backfill, skew, snapshots)
// carries them (top_k's: see the config's gate).
type ValueType uint8

// The value types.
const (
	// TypeDouble is an Avro double or float.
	TypeDouble ValueType = iota
	// TypeLong is an Avro long or int. The numeric aggregations read it as
	// a float64 (exact up to 2^53 in magnitude, rounded beyond), as a
	// double; approx_distinct tells every long apart.
	TypeLong
	// TypeBool is an Avro boolean.
	TypeBool
	// TypeString is an Avro string.
	TypeString
)

var valueTypeNames = [...]string{TypeDouble: "double", TypeLong: "long", TypeBool: "boolean", TypeString: "string"}

// String names the type as the Avro type it stands for ("double", "long",
// "boolean", "string").
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint8(t))
}

// Accepts reports whether the aggregation takes input values of type t:
// every aggregation that reads a field takes doubles and longs; the ones
// that keep values (last, first, first_k, last_k, top_k: KeepsValues) and
// approx_distinct also take booleans and strings (the last merchant
// category, the last 5 merchant ids, distinct merchants per user, a user's
// most frequent merchants). Count reads no field and accepts none. A string
// feature's window must be made WithStrings (the config does it).
func (k Kind) Accepts(t ValueType) bool {
	if !k.NeedsField() {
		return false
	}
	switch t {
	case TypeDouble, TypeLong:
		return true
	case TypeBool, TypeString:
		return k == ApproxDistinct || k.KeepsValues()
	}
	return false
}

// KeepsValues reports whether the aggregation's value is made of input
// values as they were (Last, First, FirstK, LastK, and TopK's values)
// rather than computed from them: its output has the input's type (see
// Output; TopK's counts are whole numbers beside the values).
func (k Kind) KeepsValues() bool { return k == Last || k == First || k.List() || k == TopK }

// Output is the type of the aggregation's value (of each element, for a
// list) over input values of type t: t for the kinds that keep values
// (a last of a long field is a long, a last_k of a boolean field a list
// of booleans, a last of a string field a string), TypeDouble for every
// other (counts, sums, estimates). Output encoders (lookup JSON, backfill
// Parquet and CSV, Feast) write a value by it; a number value is the
// float64 the IR holds: a long is exact (the decoder refuses longs beyond
// 2^53 for these kinds), a boolean is 0 or 1; a string value is read with
// FinalizeString or FinalizeStringList.
func (k Kind) Output(t ValueType) ValueType {
	if k.KeepsValues() && k.Accepts(t) {
		return t
	}
	return TypeDouble
}

// KindsAccepting names the aggregations that accept t, comma-separated in
// the order of Kinds (for messages: "approx_distinct").
func KindsAccepting(t ValueType) string {
	var names []string
	for _, k := range Kinds() {
		if k.Accepts(t) {
			names = append(names, k.String())
		}
	}
	return strings.Join(names, ", ")
}
