// Package jsonenc appends JSON values to byte slices exactly as
// encoding/json writes them, without reflection or allocation: the lookup
// API's answers and the lookup-log records are built with it on the hot
// path. A test holds every function equal to encoding/json.
package jsonenc

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/featurepipe/featurepipe/aggregations"
)

// AppendFloat formats f as encoding/json does. NaN and infinities, which
// encoding/json refuses, are written as null.
func AppendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString quotes s as encoding/json does with HTML escaping on (its
// Encoder's default): <, > and & as \u003c..., invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendTopValues appends the value of a top_k feature as the lookup API
// and backfill's CSV write it: a JSON array of {"value": v, "count": n}
// objects, v written as a single value of output type t is (a string, a
// boolean, a number), as encoding/json writes it.
func AppendTopValues(b []byte, l []aggregations.TopValue, t aggregations.ValueType) []byte {
	b = append(b, '[')
	for i, e := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"value":`...)
		switch t {
		case aggregations.TypeString:
			b = AppendString(b, e.Str)
		case aggregations.TypeBool:
			b = strconv.AppendBool(b, e.Value != 0)
		default:
			b = AppendFloat(b, e.Value)
		}
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, e.Count, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}
