package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Why this package computes Parsing Canonical Form itself: goavro v2.15.0
// reduces {"type":"long"} to "long" only when "type" is the object's sole
// key, so {"type":"long","logicalType":"timestamp-millis"} stays an object in
// its canonical form, and it joins a nested namespace onto the parent's. The
// Avro specification strips every attribute but name, type, fields, symbols,
// items, values and size, then writes primitives in simple form; Java, Python
// and Rust producers follow it. Codec.Rabin therefore differs from every
// other implementation's fingerprint for both demo schemas. Schema.Fingerprint
// follows the specification; Set also accepts Codec.Rabin so records
// written by goavro's SingleFromNative still decode.

// canonicalForm returns the Parsing Canonical Form of the Avro schema text, per
// the rules [PRIMITIVES], [FULLNAMES], [STRIP], [ORDER], [STRINGS],
// [INTEGERS] and [WHITESPACE] of the Avro specification.
func canonicalForm(text []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var schema any
	if err := dec.Decode(&schema); err != nil {
		return "", fmt.Errorf("canonical form: invalid JSON: %w", err)
	}
	var b strings.Builder
	if err := writeCanonical(&b, schema, ""); err != nil {
		return "", fmt.Errorf("canonical form: %w", err)
	}
	return b.String(), nil
}

// writeCanonical appends the canonical form of schema t, whose enclosing
// namespace is ns.
func writeCanonical(b *strings.Builder, t any, ns string) error {
	switch v := t.(type) {
	case string:
		if primitive(v) || strings.Contains(v, ".") || ns == "" {
			writeString(b, v)
		} else {
			writeString(b, ns+"."+v)
		}
		return nil
	case []any:
		b.WriteByte('[')
		for i, m := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, m, ns); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case map[string]any:
		return writeCanonicalObject(b, v, ns)
	}
	return fmt.Errorf("schema must be a string, array or object, got %s", jsonKind(t))
}

func writeCanonicalObject(b *strings.Builder, m map[string]any, ns string) error {
	kind, ok := m["type"].(string)
	if !ok {
		// {"type": {...}} or {"type": [...]}: the object only wraps its type.
		if t, present := m["type"]; present {
			return writeCanonical(b, t, ns)
		}
		return fmt.Errorf("schema object without \"type\"")
	}
	switch kind {
	case "record", "error", "enum", "fixed":
		full := fullName(m, ns)
		b.WriteString(`{"name":`)
		writeString(b, full)
		b.WriteString(`,"type":`)
		writeString(b, kind)
		switch kind {
		case "enum":
			b.WriteString(`,"symbols":[`)
			for i, sym := range stringsOf(m["symbols"]) {
				if i > 0 {
					b.WriteByte(',')
				}
				writeString(b, sym)
			}
			b.WriteByte(']')
		case "fixed":
			n, err := strconv.ParseInt(fmt.Sprint(m["size"]), 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("fixed %s: size %v is not a non-negative integer", full, m["size"])
			}
			b.WriteString(`,"size":`)
			b.WriteString(strconv.FormatInt(n, 10))
		default: // record, error
			fields, _ := m["fields"].([]any)
			b.WriteString(`,"fields":[`)
			for i, f := range fields {
				fm, ok := f.(map[string]any)
				if !ok {
					return fmt.Errorf("record %s: field %d is %s, want an object", full, i+1, jsonKind(f))
				}
				if i > 0 {
					b.WriteByte(',')
				}
				name, _ := fm["name"].(string)
				b.WriteString(`{"name":`)
				writeString(b, name)
				b.WriteString(`,"type":`)
				if err := writeCanonical(b, fm["type"], namespaceOf(full)); err != nil {
					return fmt.Errorf("record %s field %q: %w", full, name, err)
				}
				b.WriteByte('}')
			}
			b.WriteByte(']')
		}
		b.WriteByte('}')
		return nil
	case "array":
		b.WriteString(`{"type":"array","items":`)
		if err := writeCanonical(b, m["items"], ns); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	case "map":
		b.WriteString(`{"type":"map","values":`)
		if err := writeCanonical(b, m["values"], ns); err != nil {
			return err
		}
		b.WriteByte('}')
		return nil
	}
	// A primitive, whatever other attributes (logicalType, doc) it carries,
	// or a reference to a named type written as {"type": "Name"}.
	return writeCanonical(b, kind, ns)
}

// writeString writes s as a JSON string. [STRINGS] asks for UTF-8 rather than
// escapes; only the characters JSON cannot hold raw are escaped.
func writeString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// crc64Table is the lookup table of the CRC-64-AVRO (Rabin) fingerprint.
var crc64Table = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (crc64Empty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// crc64Empty is the CRC-64-AVRO fingerprint of the empty input.
const crc64Empty = 0xc15d213aa4d7a795

// rabin64 returns the CRC-64-AVRO fingerprint of data, as defined by the Avro
// specification ("Schema Fingerprints").
func rabin64(data []byte) uint64 {
	fp := uint64(crc64Empty)
	for _, c := range data {
		fp = (fp >> 8) ^ crc64Table[byte(fp)^c]
	}
	return fp
}
