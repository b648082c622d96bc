package lookuplog

import (
	"strconv"
	"unicode/utf8"
)

// decodeFast decodes b if it is a record value exactly as AppendStart,
// AppendFeature and AppendEnd write it (their member order, strings
// without escapes, nothing after the object), with the values
// encoding/json would give; ok is false for anything else, which Decode
// then leaves to encoding/json. Every record the lookup service writes takes
// this path: the usage follower decodes each lookup-log record of every
// replica, so this is a per-lookup cost (FuzzDecodeFast holds it to
// encoding/json).
func decodeFast(b []byte) (e *Entry, ok bool) {
	p := parser{b: b}
	e = &Entry{}
	if !p.lit(`{"entity":`) {
		return nil, false
	}
	e.Entity, ok = p.str()
	if !ok || !p.lit(`,"key":`) {
		return nil, false
	}
	if e.Key, ok = p.str(); !ok || !p.lit(`,"at":`) {
		return nil, false
	}
	if e.At, ok = p.int(); !ok {
		return nil, false
	}
	for _, f := range []struct {
		member string
		dst    *string
	}{{`,"consumer":`, &e.Consumer}, {`,"service":`, &e.Service}, {`,"request":`, &e.Request}} {
		if p.lit(f.member) {
			if *f.dst, ok = p.str(); !ok {
				return nil, false
			}
		}
	}
	if !p.lit(`,"features":{`) {
		return nil, false
	}
	e.Features = map[string]*float64{}
	if p.lit("}") {
		return p.lists(e)
	}
	var vals []float64 // one allocation for the values (a few per entry)
	for {
		id, ok := p.str()
		if !ok || !p.lit(":") {
			return nil, false
		}
		if p.lit("null") {
			e.Features[id] = nil
		} else {
			x, ok := p.float()
			if !ok {
				return nil, false
			}
			if vals == nil {
				vals = make([]float64, 0, 8)
			}
			if len(vals) == cap(vals) {
				vals = make([]float64, 0, 2*cap(vals)) // earlier pointers keep the old array
			}
			vals = append(vals, x)
			e.Features[id] = &vals[len(vals)-1]
		}
		switch {
		case p.lit(","):
		case p.lit("}"):
			return p.lists(e)
		default:
			return nil, false
		}
	}
}

// lists decodes what follows the features of e: "lists" (as
// AppendListsStart and AppendList write them), if present, then the string
// sections and the end (strs).
func (p *parser) lists(e *Entry) (*Entry, bool) {
	if p.lit(`,"lists":{`) {
		e.Lists = map[string][]float64{}
		for !p.lit("}") {
			if len(e.Lists) > 0 && !p.lit(",") {
				return nil, false
			}
			id, ok := p.str()
			if !ok || !p.lit(":") {
				return nil, false
			}
			switch {
			case p.lit("null"):
				e.Lists[id] = nil
			case p.lit("[]"):
				e.Lists[id] = []float64{}
			case p.lit("["):
				var l []float64
				for {
					x, ok := p.float()
					if !ok {
						return nil, false
					}
					l = append(l, x)
					if p.lit("]") {
						break
					}
					if !p.lit(",") {
						return nil, false
					}
				}
				e.Lists[id] = l
			default:
				return nil, false
			}
		}
	}
	return p.strs(e)
}

// strs decodes "strings" and "string_lists" (as AppendStringsStart,
// AppendString, AppendStringListsStart and AppendStringList write them),
// each if present, and the end of the object.
func (p *parser) strs(e *Entry) (*Entry, bool) {
	if p.lit(`,"strings":{`) {
		e.Strings = map[string]*string{}
		for !p.lit("}") {
			if len(e.Strings) > 0 && !p.lit(",") {
				return nil, false
			}
			id, ok := p.str()
			if !ok || !p.lit(":") {
				return nil, false
			}
			if p.lit("null") {
				e.Strings[id] = nil
				continue
			}
			v, ok := p.str()
			if !ok {
				return nil, false
			}
			e.Strings[id] = &v
		}
	}
	if p.lit(`,"string_lists":{`) {
		e.StringLists = map[string][]string{}
		for !p.lit("}") {
			if len(e.StringLists) > 0 && !p.lit(",") {
				return nil, false
			}
			id, ok := p.str()
			if !ok || !p.lit(":") {
				return nil, false
			}
			switch {
			case p.lit("null"):
				e.StringLists[id] = nil
			case p.lit("[]"):
				e.StringLists[id] = []string{}
			case p.lit("["):
				var l []string
				for {
					x, ok := p.str()
					if !ok {
						return nil, false
					}
					l = append(l, x)
					if p.lit("]") {
						break
					}
					if !p.lit(",") {
						return nil, false
					}
				}
				e.StringLists[id] = l
			default:
				return nil, false
			}
		}
	}
	if !p.lit("}") {
		return nil, false
	}
	return e, p.i == len(p.b)
}

type parser struct {
	b []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a JSON string that needs no unescaping (no backslash, no
// control character, valid UTF-8) and returns its content.
func (p *parser) str() (string, bool) {
	if p.i == len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	ascii := true
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			v := p.b[p.i+1 : j]
			if !ascii && !utf8.Valid(v) {
				return "", false
			}
			p.i = j + 1
			return string(v), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number consumes a JSON number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// and returns its text and whether it is an integer (no fraction, no
// exponent).
func (p *parser) number() (text []byte, integer, ok bool) {
	start, i, b := p.i, p.i, p.b
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return nil, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	p.i = i
	return b[start:i], integer, true
}

// int consumes a JSON integer that fits an int64 (encoding/json's rule for
// an int64 field).
func (p *parser) int() (int64, bool) {
	text, integer, ok := p.number()
	if !ok || !integer {
		return 0, false
	}
	n, err := strconv.ParseInt(string(text), 10, 64)
	return n, err == nil
}

// float consumes a JSON number that is a finite float64 (encoding/json's
// rule for a float64).
func (p *parser) float() (float64, bool) {
	text, _, ok := p.number()
	if !ok {
		return 0, false
	}
	x, err := strconv.ParseFloat(string(text), 64)
	return x, err == nil
}
