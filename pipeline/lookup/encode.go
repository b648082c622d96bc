package lookup

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends the LookupResponse of a exactly as encoding/json's
// Encoder writes it (field order, sorted map keys, omitempty, float and
// string formatting, trailing newline), without reflection or a map per
// key. TestAnswerEncodingMatchesEncodingJSON holds it to that.
func (a *lookupAnswer) appendJSON(b []byte) []byte {
	b = append(b, `{"as_of":`...)
	b = appendTime(b, a.asOf)
	b = append(b, `,"results":[`...)
	n := len(a.feats)
	for i, key := range a.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendString(b, key)
		b = append(b, `,"features":{`...)
		for k, j := range a.order {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a.names[j])
			b = append(b, ':')
			b = a.vals[i*n+j].appendJSON(b)
		}
		b = append(b, "}}"...)
	}
	b = append(b, ']')
	if len(a.warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range a.warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// appendJSON appends v as encoding/json writes the FeatureValue v.public().
func (v *value) appendJSON(b []byte) []byte {
	b = append(b, `{"value":`...)
	if v.hasV {
		b = appendFloat(b, v.v)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, v.status)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(v.version), 10)
	if v.updated > 0 {
		b = append(b, `,"updated_at":`...)
		b = appendTime(b, time.UnixMilli(v.updated).UTC())
	}
	return append(b, '}')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat formats f as encoding/json does. NaN and infinities, which
// encoding/json refuses, are written as null.
func appendFloat(b []byte, f float64) []byte {
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

// appendString quotes s as encoding/json does with HTML escaping on (its
// Encoder's default): <, > and & as \u003c..., invalid UTF-8 as \ufffd,
// U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
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
