package events

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"

	"github.com/featurepipe/featurepipe/aggregations"
	"github.com/featurepipe/featurepipe/schemas"
)

// Encoding is how Decode turns a field of a record into its float64 in
// Event.Values.
type Encoding uint8

const (
	// EncodeNumber reads a double, float, int or long as its float64 (a
	// long beyond 2^53 in magnitude rounded to the nearest double); NaN and
	// ±Inf are rejected (ReasonNonFinite). Every aggregation of a double
	// field, and every one but approx_distinct of a long field, reads it.
	EncodeNumber Encoding = iota
	// EncodeDistinct is approx_distinct's reading of a long, boolean or
	// string field: a float64 that identifies the value and is only ever
	// hashed by the sketch (see distinctValue). A long field read both ways
	// (approx_distinct and sum, say) has one slot of each.
	EncodeDistinct
	// EncodeExactLong reads a long (or int) kept as it is by last, first,
	// first_k or last_k: its float64, exact because a long beyond 2^53 in
	// magnitude is rejected (ReasonInexactLong) rather than rounded.
	EncodeExactLong
	// EncodeBool reads a boolean as 0 (false) or 1 (true), for every
	// aggregation that takes booleans.
	EncodeBool
	// EncodeString reads a string kept as it is by last, first, first_k or
	// last_k: the string goes to Event.Strs at the field's slot (Values
	// holds 0 there). The config makes such features' windows
	// WithStrings (see aggregations.Kind.Accepts).
	EncodeString
)

// exactLong is the largest magnitude up to which every long is exactly a
// float64 (2^53).
const exactLong = 1 << 53

// encodingOf is how the feature reads its field.
func encodingOf(k aggregations.Kind, t aggregations.ValueType) Encoding {
	switch {
	case t == aggregations.TypeBool:
		return EncodeBool
	case t == aggregations.TypeLong && k.KeepsValues():
		return EncodeExactLong
	case t == aggregations.TypeString && k.KeepsValues():
		return EncodeString
	case k == aggregations.ApproxDistinct && t != aggregations.TypeDouble:
		return EncodeDistinct
	}
	return EncodeNumber
}

// exactLongValue reads field name as EncodeExactLong does.
func exactLongValue(rec map[string]any, name string) (float64, *Rejection) {
	v, err := schemas.Int(rec, name)
	if err != nil {
		return 0, reject(ReasonInvalidField, "%v", err)
	}
	if v < -exactLong || v > exactLong {
		return 0, reject(ReasonInexactLong, "field %q is %d, beyond ±2^53: last, first, first_k and last_k keep longs exactly only up to 2^53 in magnitude", name, v)
	}
	return float64(v), nil
}

// boolValue reads field name as EncodeBool does.
func boolValue(rec map[string]any, name string) (float64, error) {
	b, err := schemas.Bool(rec, name)
	if err != nil || !b {
		return 0, err
	}
	return 1, nil
}

// distinctValue reads field name of rec, of type t (a long or a string),
// as approx_distinct's input: a float64 whose bits stand for the value, the
// same in every process (the workers and backfill decode with this
// function; a boolean is read by EncodeBool, 0 or 1):
//
//   - a long (or int) of magnitude at most 2^53 is its float64, exactly the
//     number a double field holding it would count (and what approx_distinct
//     of a long field counted before this encoding: its state stays valid);
//   - a longer long is hashFloat of XXH64 of its 8 little-endian bytes, so
//     longs beyond 2^53 (snowflake ids) that a double would round together
//     stay apart;
//   - a string is hashFloat of XXH64 of its UTF-8 bytes.
//
// XXH64 is a fixed, portable function: the same value hashes the same on
// every machine and version. Two distinct hashed values share a float64
// with probability 2^-63 (the collision error aggregations/hll.go states).
// Costs one hash of the string and no allocation.
func distinctValue(rec map[string]any, name string, t aggregations.ValueType) (float64, error) {
	switch t {
	case aggregations.TypeString:
		s, err := schemas.String(rec, name)
		if err != nil {
			return 0, err
		}
		return hashFloat(xxhash.Sum64String(s)), nil
	case aggregations.TypeLong:
		v, err := schemas.Int(rec, name)
		if err != nil {
			return 0, err
		}
		return distinctLong(v), nil
	}
	return 0, fmt.Errorf("field %q: approx_distinct reads no %v field this way", name, t) // unreachable for a validated file
}

// distinctLong is distinctValue of a long v.
func distinctLong(v int64) float64 {
	if v >= -exactLong && v <= exactLong {
		return float64(v)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	return hashFloat(xxhash.Sum64(b[:]))
}

// hashFloat is the finite float64 (magnitude below 2) with the bits of h
// but the highest exponent bit: 63 bits of the hash survive, and no value is
// a NaN or an infinity, so the IR's exact fields (sum, mean), which
// approx_distinct never reads, stay finite numbers.
func hashFloat(h uint64) float64 { return math.Float64frombits(h &^ (1 << 62)) }
