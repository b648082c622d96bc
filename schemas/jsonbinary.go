package schemas

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxFlatFields bounds the fields AppendFlatJSON handles: its per-call
// scratch lives on the stack up to this many fields. Records with more
// fields take the slow path.
const maxFlatFields = 64

// AppendFlatJSON appends the Avro binary body (no header) of the record that
// the JSON object obj describes to dst: the same bytes as
// s.Codec.BinaryFromNative(dst, FromJSON(obj)), without building the map
// (ok true). raw, when not nil, must have len(s.Fields) entries; raw[i] is
// then set to the bytes of field i's value when it is a string without JSON
// escapes (a sub-slice of obj, valid until obj changes), else nil.
//
// It handles the common line only, and gives up (ok false, dst returned
// unchanged) on anything else, leaving the caller to run FromJSON, which
// accepts or names the problem: obj not valid JSON or not a flat object
// (nested values), a string with escapes or invalid UTF-8, a field of a
// type other than string, long, int, double, float, boolean and enum (or a
// two-branch nullable union of one of them), a logical type other than
// timestamp-millis, a missing field whose default is not null, and every
// line FromJSON would refuse (unknown, repeated or mistyped fields, numbers
// out of range). So an ok line encodes exactly as the slow path would, and
// every error comes from the slow path.
//
// Cost: one pass over obj, which it checks against JSON's grammar itself;
// no allocation when dst has room.
func (s *Schema) AppendFlatJSON(dst, obj []byte, raw [][]byte) (out []byte, ok bool) {
	n := len(s.Fields)
	if n > maxFlatFields || (raw != nil && len(raw) != n) {
		return dst, false
	}
	type span struct{ from, to int } // a value's bytes in obj; to == 0: absent
	var spans [maxFlatFields]span
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return dst, false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		i++
	} else {
		for {
			end, ok := plainStringEnd(obj, i)
			if !ok {
				return dst, false
			}
			idx, known := s.index[string(obj[i+1:end-1])]
			if !known || spans[idx].to != 0 {
				return dst, false // unknown or repeated: the slow path names it
			}
			if i = skipSpace(obj, end); i >= len(obj) || obj[i] != ':' {
				return dst, false
			}
			i = skipSpace(obj, i+1)
			if end, ok = scalarEnd(obj, i); !ok {
				return dst, false
			}
			spans[idx] = span{i, end}
			if i = skipSpace(obj, end); i >= len(obj) {
				return dst, false
			}
			if obj[i] == '}' {
				i++
				break
			}
			if obj[i] != ',' {
				return dst, false
			}
			i = skipSpace(obj, i+1)
		}
	}
	if skipSpace(obj, i) != len(obj) {
		return dst, false
	}
	out = dst
	for f := range n {
		field, spec := s.Fields[f], &s.specs[f]
		if raw != nil {
			raw[f] = nil
		}
		sp := spans[f]
		if sp.to == 0 { // missing: only a null default is written here
			if !field.Nullable || field.Type == "union" || !spec.hasDefault || spec.defaultVal != nil {
				return dst, false
			}
			out = binary.AppendVarint(out, int64(spec.nullIndex))
			continue
		}
		v := obj[sp.from:sp.to]
		if v[0] == 'n' { // null
			if !field.Nullable || field.Type == "union" {
				return dst, false
			}
			out = binary.AppendVarint(out, int64(spec.nullIndex))
			continue
		}
		if field.Nullable {
			if field.Type == "union" {
				return dst, false
			}
			out = binary.AppendVarint(out, int64(1-spec.nullIndex))
		}
		var good bool
		if out, good = appendFlatValue(out, field, spec, v); !good {
			return dst, false
		}
		if raw != nil && v[0] == '"' {
			raw[f] = v[1 : len(v)-1]
		}
	}
	return out, true
}

// plainStringEnd returns the index just after the JSON string starting at
// obj[i], when it is one without escapes or control characters (ok false
// otherwise, and when obj[i] is not '"' or the string is not closed). Its
// bytes may still be invalid UTF-8.
func plainStringEnd(obj []byte, i int) (int, bool) {
	if i >= len(obj) || obj[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(obj); j++ {
		switch c := obj[j]; {
		case c == '"':
			return j + 1, true
		case c == '\\' || c < 0x20:
			return 0, false
		}
	}
	return 0, false
}

// scalarEnd returns the index just after the JSON string without escapes,
// number, true, false or null starting at obj[i] (ok false for anything
// else, and for a number JSON's grammar refuses).
func scalarEnd(obj []byte, i int) (int, bool) {
	if i >= len(obj) {
		return 0, false
	}
	literal := func(word string) (int, bool) {
		end := i + len(word)
		return end, end <= len(obj) && string(obj[i:end]) == word
	}
	switch c := obj[i]; {
	case c == '"':
		return plainStringEnd(obj, i)
	case c == 't':
		return literal("true")
	case c == 'f':
		return literal("false")
	case c == 'n':
		return literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return numberEnd(obj, i)
	}
	return 0, false
}

// numberEnd returns the index just after the JSON number starting at
// obj[i]: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func numberEnd(obj []byte, i int) (int, bool) {
	digits := func(j int) int {
		for j < len(obj) && obj[j] >= '0' && obj[j] <= '9' {
			j++
		}
		return j
	}
	if obj[i] == '-' {
		i++
	}
	switch {
	case i < len(obj) && obj[i] == '0':
		i++
	case i < len(obj) && obj[i] >= '1' && obj[i] <= '9':
		i = digits(i + 1)
	default:
		return 0, false
	}
	if i < len(obj) && obj[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(obj) && (obj[i] == 'e' || obj[i] == 'E') {
		i++
		if i < len(obj) && (obj[i] == '+' || obj[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

// appendFlatValue appends the Avro binary encoding of the non-null JSON
// value v (its bytes in the line) for field, or reports false when the fast
// path does not handle it (see AppendFlatJSON).
func appendFlatValue(out []byte, field Field, spec *fieldSpec, v []byte) ([]byte, bool) {
	switch field.Type {
	case "string", "enum":
		if field.LogicalType != "" || v[0] != '"' {
			return out, false
		}
		body := v[1 : len(v)-1]
		if bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body) {
			return out, false
		}
		if field.Type == "enum" {
			for k, sym := range spec.symbols {
				if sym == string(body) {
					return binary.AppendVarint(out, int64(k)), true
				}
			}
			return out, false
		}
		out = binary.AppendVarint(out, int64(len(body)))
		return append(out, body...), true
	case "boolean":
		switch v[0] {
		case 't':
			return append(out, 1), true
		case 'f':
			return append(out, 0), true
		}
		return out, false
	case "long", "int":
		if !isNumber(v) || field.LogicalType != "" && !(field.Type == "long" && field.LogicalType == "timestamp-millis") {
			return out, false
		}
		x, integral, inRange := parseInteger(string(v))
		if !integral || !inRange || field.Type == "int" && (x < math.MinInt32 || x > math.MaxInt32) {
			return out, false
		}
		return binary.AppendVarint(out, x), true
	case "double", "float":
		if !isNumber(v) || field.LogicalType != "" {
			return out, false
		}
		if field.Type == "float" {
			x, err := strconv.ParseFloat(string(v), 32)
			if err != nil || math.IsInf(x, 0) {
				return out, false
			}
			return binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(x))), true
		}
		x, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(x, 0) {
			return out, false
		}
		return binary.LittleEndian.AppendUint64(out, math.Float64bits(x)), true
	}
	return out, false
}

// isNumber reports whether the JSON value v is a number.
func isNumber(v []byte) bool { return v[0] == '-' || v[0] >= '0' && v[0] <= '9' }
