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
// added or compared.
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
// every aggregation that reads a field takes doubles and longs;
// approx_distinct also takes booleans and strings (distinct merchants per
// user). Count reads no field and accepts none.
func (k Kind) Accepts(t ValueType) bool {
	if !k.NeedsField() {
		return false
	}
	switch t {
	case TypeDouble, TypeLong:
		return true
	case TypeBool, TypeString:
		return k == ApproxDistinct
	}
	return false
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
