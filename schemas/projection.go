package schemas

import (
	"encoding/binary"
	"math"
	"strconv"
)

// A Projection reads a few top-level fields of records written with one
// schema straight from their Avro binary body, without building goavro's
// native map: the fast path of decoding a record whose writer schema is the
// one it is read with. It costs no allocation per record (strings alias the
// body) and a few nanoseconds per field.
//
// It is exact by construction rather than complete: Decode answers only for
// records it reads exactly as DecodeBinary followed by Float, Int and String
// would (the same values, the whole body consumed), and reports false for
// every other record (malformed, a null where a value is read, a varint
// longer than Avro allows), which the caller then decodes with DecodeBinary
// to get the same values or the same error. Project refuses schemas whose
// fields are not all primitives or nullable primitives, and logical types
// other than the date and time ones.
//
// A Projection is immutable and safe for concurrent use.
type Projection struct {
	steps []projStep
	slots int
}

// Target is how a projected field is read, like the accessor of that name.
// Targets are bits: a field read several ways (an int both as a where's
// CEL int and as a summed number) is projected once with their union, and
// Project checks that the field's type fits every one of them.
type Target uint8

// The targets of a projected field.
const (
	AsString Target = 1 << iota // as String: a string, or an int or long in base 10
	AsInt                       // as Int: an int or a long (timestamp-millis included)
	AsFloat                     // as Float: a double, float, int or long
	AsBool                      // as Bool: a boolean
)

// Projected is the value of one projected field after Projection.Decode:
// Str for AsString (aliasing the decoded body; String formats an integer
// there), Int for AsInt, Float for AsFloat, Bool for AsBool. An int or long
// field fills Int, Float and (as a number) String at once.
type Projected struct {
	Str   []byte
	Int   int64
	Float float64
	Bool  bool
	num   bool // Str is empty because the field is an integer: see String
}

// String returns the value of an AsString field, formatting an integer in
// base 10 as String does (the one case that allocates).
func (v *Projected) String() string {
	if v.num {
		return strconv.FormatInt(v.Int, 10)
	}
	return string(v.Str)
}

// Bytes returns the value of an AsString field as bytes, aliasing the body
// (an integer field is formatted, as String does).
func (v *Projected) Bytes() []byte {
	if v.num {
		return strconv.AppendInt(nil, v.Int, 10)
	}
	return v.Str
}

type projKind uint8

const (
	pNull projKind = iota
	pBool
	pInt
	pLong
	pFloat
	pDouble
	pBytes // bytes and string
)

// projStep decodes one field of the record, in schema order.
type projStep struct {
	kind      projKind
	nullable  bool
	nullIndex int64
	slot      int // -1: skipped
	target    Target
	str       bool // a string (not bytes): the only kind AsString reads as text
}

// Project compiles a projection of s reading fields[i] as targets[i] (one
// or more Target bits) into slot i of Decode's out. ok is false when s has a field the projection
// cannot decode (a record, enum, array, map, fixed or union that is not a
// nullable primitive, or a logical type other than date, time-millis,
// time-micros, timestamp-millis and timestamp-micros), a field it should
// read is missing, or a target does not fit its field's type as the
// accessors define (then the caller keeps the generic path, which reports
// the error per record).
func (s *Schema) Project(fields []string, targets []Target) (p *Projection, ok bool) {
	if len(fields) != len(targets) {
		return nil, false
	}
	p = &Projection{steps: make([]projStep, len(s.Fields)), slots: len(fields)}
	for i, f := range s.Fields {
		st := projStep{slot: -1, nullable: f.Nullable, nullIndex: int64(s.specs[i].nullIndex)}
		switch f.Type {
		case "null":
			st.kind = pNull
		case "boolean":
			st.kind = pBool
		case "int":
			st.kind = pInt
		case "long":
			st.kind = pLong
		case "float":
			st.kind = pFloat
		case "double":
			st.kind = pDouble
		case "bytes":
			st.kind = pBytes
		case "string":
			st.kind, st.str = pBytes, true
		default:
			return nil, false
		}
		if f.Type == "null" && f.Nullable {
			return nil, false // a union of null and null is no nullable primitive
		}
		switch f.LogicalType {
		case "":
		case "date", "time-millis":
			if st.kind != pInt {
				return nil, false
			}
		case "timestamp-millis", "timestamp-micros", "time-micros":
			if st.kind != pLong {
				return nil, false
			}
		default:
			return nil, false
		}
		p.steps[i] = st
	}
	for slot, name := range fields {
		i, found := s.index[name]
		if !found {
			return nil, false
		}
		st := &p.steps[i]
		if st.slot >= 0 {
			return nil, false // one slot per field
		}
		lt := s.Fields[i].LogicalType
		t := targets[slot]
		if t == 0 || t&^(AsString|AsInt|AsFloat|AsBool) != 0 {
			return nil, false
		}
		if t&AsString != 0 && !(st.str && lt == "") && !((st.kind == pInt || st.kind == pLong) && lt == "") {
			return nil, false
		}
		if t&AsInt != 0 && !((st.kind == pInt && lt == "") || (st.kind == pLong && (lt == "" || lt == "timestamp-millis"))) {
			return nil, false
		}
		if t&AsFloat != 0 && st.kind != pDouble && st.kind != pFloat && !((st.kind == pInt || st.kind == pLong) && lt == "") {
			return nil, false
		}
		if t&AsBool != 0 && st.kind != pBool {
			return nil, false
		}
		st.slot, st.target = slot, targets[slot]
	}
	return p, true
}

// Slots is the number of values Decode fills.
func (p *Projection) Slots() int { return p.slots }

// Decode reads the projected fields of the Avro binary body b (no header)
// into out (at least Slots() long). ok is false when the record is not one
// Decode reads exactly (see Projection): decode it with DecodeBinary.
func (p *Projection) Decode(b []byte, out []Projected) (ok bool) {
	if len(out) < p.slots {
		return false
	}
	for i := range p.steps {
		st := &p.steps[i]
		if st.nullable {
			br, n := varlong(b)
			if n == 0 || (br != 0 && br != 1) {
				return false
			}
			b = b[n:]
			if br == st.nullIndex {
				if st.slot >= 0 {
					return false // null: the accessors' error, by the generic path
				}
				continue
			}
		}
		var v Projected
		switch st.kind {
		case pNull:
		case pBool:
			if len(b) < 1 || b[0] > 1 {
				return false
			}
			v.Bool = b[0] == 1
			b = b[1:]
		case pInt:
			x, n := varint(b)
			if n == 0 {
				return false
			}
			b = b[n:]
			v.Int, v.Float, v.num = int64(x), float64(x), true
		case pLong:
			x, n := varlong(b)
			if n == 0 {
				return false
			}
			b = b[n:]
			v.Int, v.Float, v.num = x, float64(x), true
		case pFloat:
			if len(b) < 4 {
				return false
			}
			v.Float = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
			b = b[4:]
		case pDouble:
			if len(b) < 8 {
				return false
			}
			v.Float = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		case pBytes:
			size, n := varlong(b)
			if n == 0 || size < 0 || size > int64(len(b)-n) {
				return false
			}
			v.Str = b[n : n+int(size)]
			b = b[n+int(size):]
		}
		if st.slot >= 0 {
			out[st.slot] = v
		}
	}
	return len(b) == 0 // trailing bytes: DecodeBinary's ErrMalformed
}

// varlong decodes a zig-zag varint long as goavro does; n is the bytes
// read, 0 when b ends first or the varint is longer than a long's 10
// bytes (goavro would read further: left to it).
func varlong(b []byte) (int64, int) {
	var v uint64
	var shift uint
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1), i + 1
		}
		shift += 7
	}
	return 0, 0
}

// varint decodes a zig-zag varint int as goavro does (its int32 of the
// accumulated value); n is 0 when b ends first or the varint is longer than
// an int's 5 bytes.
func varint(b []byte) (int32, int) {
	var v int
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		v |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return int32(v>>1) ^ -int32(v&1), i + 1
		}
		shift += 7
	}
	return 0, 0
}
