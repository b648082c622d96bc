package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FromJSON converts one JSON object into the goavro native record for s, ready
// for Encode. It is how producers and tests turn JSON lines into events.
//
// Fields are plain JSON values as the schema declares them (not Avro's JSON
// encoding with wrapped unions); timestamps are epoch milliseconds.
//
//   - Numbers become int64 (long), int32 (int), float64 (double) or float32
//     (float), as the field needs. A long or int must be an exact integer
//     ("1e3" is accepted, 1.5 is not) within the type's range; a double or
//     float must be finite in its precision.
//   - A timestamp-millis field becomes an int64 of epoch milliseconds, which
//     Encode accepts; a decoded record holds a time.Time instead, and Int
//     reads both.
//   - A nullable field becomes nil for JSON null, else goavro's union form
//     map[string]any{branch: v} (see the package doc for branch names).
//   - A missing field takes the schema's default, else is an error. An
//     unknown or repeated field is an error.
//   - boolean, string, bytes (JSON string of code points 0-255, as in Avro's
//     JSON encoding) and enum (one of its symbols) are supported; fields of
//     other complex types are reported as errors.ErrUnsupported.
//
// Errors name the field and say what was expected, e.g.
// `field "amount": want double, got string "abc"`; field errors are
// *FieldError values.
//
// Cost: json.Valid over obj, then one pass over a flat object (values are
// strings, numbers, booleans or null), one map of len(s.Fields) and one
// allocation per string value and per boxed number. Any other line (not
// valid JSON, or with a nested value) is decoded token by token with
// encoding/json instead, several times slower, with the same result and the
// same errors.
func (s *Schema) FromJSON(obj []byte) (map[string]any, error) {
	if json.Valid(obj) {
		if out, ok, err := s.fromFlatJSON(obj); ok {
			return out, err
		}
	}
	return s.fromJSONTokens(obj)
}

// fromFlatJSON is FromJSON of obj, which json.Valid accepted, when obj is
// one object whose values are all strings, numbers, booleans or null (ok
// true); it gives up (ok false) at the first nested value or when obj is
// not an object. Errors and their order are those of fromJSONTokens: the
// fields are converted in input order, and the first problem is returned.
func (s *Schema) fromFlatJSON(obj []byte) (out map[string]any, ok bool, err error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false, nil
	}
	i = skipSpace(obj, i+1)
	out = make(map[string]any, len(s.Fields))
	for i < len(obj) && obj[i] == '"' {
		end := stringEnd(obj, i)
		name, ok := jsonString(obj[i:end])
		if !ok {
			return nil, false, nil
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // the ':' (obj is valid JSON)
		var v any
		switch c := obj[i]; {
		case c == '"':
			end = stringEnd(obj, i)
			if v, ok = jsonString(obj[i:end]); !ok {
				return nil, false, nil
			}
		case c == '-' || c >= '0' && c <= '9':
			end = i + 1
			for end < len(obj) && strings.IndexByte("0123456789+-.eE", obj[end]) >= 0 {
				end++
			}
			v = json.Number(obj[i:end])
		case c == 't':
			v, end = true, i+4
		case c == 'f':
			v, end = false, i+5
		case c == 'n':
			v, end = nil, i+4
		default: // an object or an array
			return nil, false, nil
		}
		i = skipSpace(obj, end)
		if obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
		idx, known := s.index[name]
		if !known {
			return nil, true, fieldErr(name, ErrUnknownField, "not in schema "+s.Name)
		}
		if _, dup := out[name]; dup {
			return nil, true, fieldErr(name, ErrUnknownField, "appears twice")
		}
		nv, err := s.nativeValue(idx, v)
		if err != nil {
			return nil, true, err
		}
		out[name] = nv
	}
	if out, err = s.defaults(out); err != nil {
		return nil, true, err
	}
	return out, true, nil
}

// skipSpace returns the index of the first byte of b at or after i that is
// not JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just after the JSON string starting at b[i]
// (a '"'), in valid JSON.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++ // the escaped byte (for \uXXXX, the hex digits are not '"')
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// jsonString returns the value of the quoted JSON string q when it has no
// escapes and is valid UTF-8 (ok false otherwise: encoding/json then
// decodes it, replacing invalid UTF-8 as it does).
func jsonString(q []byte) (string, bool) {
	body := q[1 : len(q)-1]
	if bytes.IndexByte(body, '\\') >= 0 || !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}

// fromJSONTokens is FromJSON decoding obj token by token with encoding/json.
func (s *Schema) fromJSONTokens(obj []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s from JSON: %w", s.Name, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s from JSON: want a JSON object, got %s", s.Name, tokenKind(tok))
	}
	out := make(map[string]any, len(s.Fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s from JSON: %w", s.Name, err)
		}
		name, _ := tok.(string) // object keys are always strings
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s from JSON: field %q: %w", s.Name, name, err)
		}
		i, ok := s.index[name]
		if !ok {
			return nil, fieldErr(name, ErrUnknownField, "not in schema "+s.Name)
		}
		if _, dup := out[name]; dup {
			return nil, fieldErr(name, ErrUnknownField, "appears twice")
		}
		nv, err := s.nativeValue(i, v)
		if err != nil {
			return nil, err
		}
		out[name] = nv
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%s from JSON: %w", s.Name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s from JSON: data after the object", s.Name)
	}
	return s.defaults(out)
}

// defaults fills the fields missing from out with their schema defaults,
// or fails naming the first missing field without one.
func (s *Schema) defaults(out map[string]any) (map[string]any, error) {
	if len(out) == len(s.Fields) {
		return out, nil
	}
	for i, f := range s.Fields {
		if _, ok := out[f.Name]; ok {
			continue
		}
		spec := s.specs[i]
		if !spec.hasDefault {
			return nil, fieldErr(f.Name, ErrMissingField, "missing, and the schema gives no default")
		}
		nv, err := s.nativeValue(i, spec.defaultVal)
		if err != nil {
			return nil, fmt.Errorf("schema default: %w", err)
		}
		out[f.Name] = nv
	}
	return out, nil
}

// nativeValue converts the JSON value v (decoded with UseNumber) for field i.
func (s *Schema) nativeValue(i int, v any) (any, error) {
	f, spec := s.Fields[i], s.specs[i]
	if v == nil {
		if f.Nullable || f.Type == "null" {
			return nil, nil
		}
		return nil, fieldErr(f.Name, ErrNullField, "want "+f.Type+", got null")
	}
	nv, err := convertJSON(f, spec, v)
	if err != nil {
		return nil, err
	}
	if f.Nullable {
		return map[string]any{spec.unionKey: nv}, nil
	}
	return nv, nil
}

// convertJSON converts a non-null JSON value to the native form of f's type.
func convertJSON(f Field, spec fieldSpec, v any) (any, error) {
	wrong := func(extra string) error {
		return fieldErr(f.Name, ErrWrongType, "want "+f.Type+", got "+describeJSON(v)+extra)
	}
	if f.LogicalType == "decimal" {
		return nil, fieldErr(f.Name, errors.ErrUnsupported, "decimal fields are not supported by FromJSON")
	}
	switch f.Type {
	case "string", "enum", "bytes":
		str, ok := v.(string)
		if !ok {
			return nil, wrong("")
		}
		switch f.Type {
		case "enum":
			for _, sym := range spec.symbols {
				if sym == str {
					return str, nil
				}
			}
			return nil, fieldErr(f.Name, ErrWrongType, fmt.Sprintf("want one of %s, got %s", strings.Join(spec.symbols, ", "), describeJSON(v)))
		case "bytes":
			b := make([]byte, 0, len(str))
			for _, r := range str {
				if r > 0xFF {
					return nil, fieldErr(f.Name, ErrWrongType, fmt.Sprintf("want bytes (code points 0-255), got %U", r))
				}
				b = append(b, byte(r))
			}
			return b, nil
		}
		return str, nil
	case "boolean":
		b, ok := v.(bool)
		if !ok {
			return nil, wrong("")
		}
		return b, nil
	case "long", "int":
		n, ok := v.(json.Number)
		if !ok {
			return nil, wrong("")
		}
		i, integral, inRange := parseInteger(string(n))
		if !integral {
			return nil, fieldErr(f.Name, ErrWrongType, "want "+f.Type+", got non-integral number "+truncate(string(n)))
		}
		if f.Type == "int" {
			if !inRange || i < math.MinInt32 || i > math.MaxInt32 {
				return nil, wrong(" (out of range)")
			}
			return int32(i), nil
		}
		if !inRange {
			return nil, wrong(" (out of range)")
		}
		return i, nil
	case "double", "float":
		n, ok := v.(json.Number)
		if !ok {
			return nil, wrong("")
		}
		bits := 64
		if f.Type == "float" {
			bits = 32
		}
		x, err := strconv.ParseFloat(string(n), bits)
		if err != nil || math.IsInf(x, 0) {
			return nil, wrong(" (out of range)")
		}
		if bits == 32 {
			return float32(x), nil
		}
		return x, nil
	case "null":
		return nil, wrong("")
	}
	return nil, fieldErr(f.Name, errors.ErrUnsupported, "fields of type "+f.Type+" are not supported by FromJSON")
}

// parseInteger parses a JSON number exactly: integral reports whether its
// value is a whole number (1e3 and 10.0 are, 1.5 is not, whatever the
// precision), and inRange whether that whole number fits an int64.
func parseInteger(s string) (v int64, integral, inRange bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true, true
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, true, false
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil { // exponent beyond int: absurd magnitude either way
			e = math.MaxInt32
			if strings.HasPrefix(s[i+1:], "-") {
				e = math.MinInt32
			}
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	point := len(intPart) + exp - (len(intPart+frac) - len(digits)) // digits before the decimal point
	if digits == "" {
		return 0, true, true // zero, however written
	}
	if point < len(digits) {
		lo := max(point, 0)
		if strings.Trim(digits[lo:], "0") != "" {
			return 0, false, false
		}
		digits = digits[:lo]
		if digits == "" {
			return 0, true, true
		}
	}
	if point > 19 { // more than 19 digits cannot fit an int64
		return 0, true, false
	}
	digits += strings.Repeat("0", point-len(digits))
	if neg {
		digits = "-" + digits
	}
	i, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, true, false
	}
	return i, true, true
}

// describeJSON describes a decoded JSON value for error messages, e.g.
// `string "abc"`, `number 1.5`, `boolean true`, `null`, `object`.
func describeJSON(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(truncate(x))
	case json.Number:
		return "number " + truncate(string(x))
	case float64:
		return "number " + strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	}
	return jsonKind(v)
}

// jsonKind names the JSON kind of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "array"
		}
		return string(t)
	}
	return jsonKind(tok)
}

// truncate keeps error messages short when the input holds a huge value.
func truncate(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
