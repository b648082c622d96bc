package lookup

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"unicode/utf8"
)

// The request decoder of POST /v1/lookup. Nearly every request has the
// documented shape, {"entity":"user","keys":["u1"],"features":["a","b"]}:
// for it, parseLookupFast reads the body in one pass with no reflection and
// one allocation (the body's text, which the entity, keys and feature names
// are slices of). Anything else (escapes, objects as keys, nulls, other
// spellings of the field names, duplicates, errors of any kind) falls back
// to encoding/json on the same bytes (decodeBody), so the accepted inputs,
// the values and the 4xx errors are exactly encoding/json's
// (FuzzLookupBodyDecoders holds the fast path to that).

// lookupFields is a decoded POST /v1/lookup body. keys are entity key
// strings when plain is set (the fast path: every key was a JSON string);
// otherwise raw holds the keys as JSON, for requestKeys.
type lookupFields struct {
	entity, service string
	keys            []string
	features        []string
	raw             []json.RawMessage
	plain           bool
}

// numKeys is the number of keys the body listed.
func (f *lookupFields) numKeys() int {
	if f.plain {
		return len(f.keys)
	}
	return len(f.raw)
}

// decodeLookup reads r's body (bounded by the endpoint's MaxBytesReader)
// into a pooled buffer and decodes it into f, appending keys and feature
// names to keys and features (the caller's reusable slices). Without fast,
// it decodes with encoding/json only.
func decodeLookup(r *http.Request, keys, features []string, fast bool) (lookupFields, error) {
	bp := bufPool.Get().(*[]byte)
	b, rerr := readAll(r.Body, (*bp)[:0])
	defer func() {
		if cap(b) <= 64<<10 { // do not pool the buffers of huge bodies
			*bp = b[:0]
			bufPool.Put(bp)
		}
	}()
	if rerr == nil && fast {
		if f, ok := parseLookupFast(b, keys, features); ok {
			return f, nil
		}
	}
	// encoding/json sees the very bytes the body gave, then its end or the
	// read's error (a MaxBytesError: 413), as if it had read the body itself.
	var src io.Reader = bytes.NewReader(b)
	if rerr != nil {
		src = io.MultiReader(src, errReader{rerr})
	}
	var body lookupBody
	if err := decodeBody(src, &body, true); err != nil {
		return lookupFields{}, err
	}
	return lookupFields{entity: body.Entity, service: body.FeatureService, features: body.Features, raw: body.Keys}, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// readAll appends r's content to b until io.EOF (nil error) or another
// error, which it returns with what was read before it.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// parseLookupFast decodes body if it has the common shape of a lookup
// request: one JSON object whose members are among "entity" and
// "feature_service" (strings) and "keys" and "features" (arrays of
// strings), each at most once and spelt exactly so, whose strings have no
// escape, control character or invalid UTF-8, with only JSON whitespace
// around it. It then gives exactly what encoding/json gives for it
// (decodeBody into lookupBody, then requestKeys for an entity with a single
// key field), with keys and features appended to the given slices, and
// ok; for any other body, ok is false and the caller decodes it with
// encoding/json. Cost: one allocation (string(body)).
func parseLookupFast(body []byte, keys, features []string) (f lookupFields, ok bool) {
	s := string(body)
	f.keys, f.features, f.plain = keys, features, true
	i := skipSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return f, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return f, skipSpace(s, i+1) == len(s)
	}
	var seen uint8
	for {
		var name string
		if name, i, ok = plainString(s, i); !ok {
			return f, false
		}
		if i = skipSpace(s, i); i == len(s) || s[i] != ':' {
			return f, false
		}
		i = skipSpace(s, i+1)
		var bit uint8
		switch name {
		case "entity":
			bit = 1
			f.entity, i, ok = plainString(s, i)
		case "feature_service":
			bit = 2
			f.service, i, ok = plainString(s, i)
		case "keys":
			bit = 4
			f.keys, i, ok = stringArray(s, i, f.keys)
		case "features":
			bit = 8
			f.features, i, ok = stringArray(s, i, f.features)
		default:
			return f, false
		}
		if !ok || seen&bit != 0 {
			return f, false
		}
		seen |= bit
		if i = skipSpace(s, i); i == len(s) {
			return f, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return f, skipSpace(s, i+1) == len(s)
		default:
			return f, false
		}
	}
}

// skipSpace returns the index of the first byte of s at or after i that is
// not JSON whitespace, or len(s).
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at s[i] if it needs no unescaping: no
// backslash, no control character, valid UTF-8. It returns its content and
// the index after its closing quote.
func plainString(s string, i int) (string, int, bool) {
	if i == len(s) || s[i] != '"' {
		return "", i, false
	}
	ascii := true
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			v := s[i+1 : j]
			if !ascii && !utf8.ValidString(v) {
				return "", i, false // encoding/json replaces invalid bytes with U+FFFD
			}
			return v, j + 1, true
		case c == '\\' || c < 0x20:
			return "", i, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", i, false
}

// stringArray reads the JSON array of plain strings at s[i], appending them
// to dst, and returns the index after its closing bracket.
func stringArray(s string, i int, dst []string) ([]string, int, bool) {
	if i == len(s) || s[i] != '[' {
		return dst, i, false
	}
	if i = skipSpace(s, i+1); i < len(s) && s[i] == ']' {
		return dst, i + 1, true
	}
	for {
		v, j, ok := plainString(s, i)
		if !ok {
			return dst, i, false
		}
		dst = append(dst, v)
		if i = skipSpace(s, j); i == len(s) {
			return dst, i, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case ']':
			return dst, i + 1, true
		default:
			return dst, i, false
		}
	}
}
