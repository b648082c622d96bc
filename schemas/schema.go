// Package schemas owns featurepipe's Avro schemas and the encoding of events.
//
// Events travel on Kafka in one of two encodings. Avro single-object
// encoding (Avro specification, "Single-object encoding"): the two marker
// bytes C3 01, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of
// the writer schema's Parsing Canonical Form, then the Avro binary body; a
// consumer resolves the writer schema by that fingerprint among the schemas
// named by the feature file (a Set). Or Confluent's wire format (0x00, a
// 4-byte schema id, the body: ConfluentID, EncodeConfluent), whose writer
// schema a schema registry holds (package internal/schemaregistry fetches it).
//
// A record written with another schema than the one a consumer reads with is
// read by Avro's schema resolution rules: Resolve, once per writer schema,
// then Resolution.Apply per record.
//
// The fingerprint follows the specification's Parsing Canonical Form, which
// goavro's Codec.Rabin does not for schemas with logical types (see
// Schema.CanonicalForm); a Set accepts both, Encode writes the former.
//
// Native records are the map[string]any form of github.com/linkedin/goavro/v2.
// Two details of that form matter to callers, and the accessors Float, Int and
// String hide both:
//
//   - A nullable field (union ["null", T]) holds nil or map[string]any{name: v},
//     where name is goavro's name for T: the primitive name ("double"), or
//     "long.timestamp-millis" when T carries a logical type goavro implements.
//   - A long with logicalType timestamp-millis decodes to a time.Time in UTC.
//     Encode accepts either a time.Time or a Go integer holding epoch
//     milliseconds; FromJSON produces the int64 form.
//
// Float, Int and String read one field of a native record as the type an
// aggregation or a key needs, unwrapping nullable unions; any single-entry
// map is taken as a union branch, so do not use them on fields of Avro type
// map. Their errors, like FromJSON's, are *FieldError values naming the field.
//
// This package imports goavro and the standard library only.
package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"github.com/linkedin/goavro/v2"
)

// Schema is one parsed Avro record schema. A Schema is immutable after Parse
// and safe for concurrent use.
type Schema struct {
	Name        string        // full record name, e.g. featurepipe.demo.Transaction
	Codec       *goavro.Codec // goavro codec for the schema; safe for concurrent use
	Fingerprint uint64        // CRC-64-AVRO of the spec's Parsing Canonical Form; see CanonicalForm
	Fields      []Field       // top-level fields, in schema order

	canonical string           // Parsing Canonical Form, per the Avro specification
	specs     []fieldSpec      // parallel to Fields: what FromJSON needs
	index     map[string]int   // field name -> position in Fields
	named     map[string]named // named types defined anywhere in the schema, by full name
}

// Field describes one top-level field of a record schema.
type Field struct {
	Name string
	// Type is the Avro type after unwrapping a two-branch nullable union
	// ["null", T] (or [T, "null"]): a primitive ("string", "long", "int",
	// "double", "float", "boolean", "bytes", "null") or a complex kind
	// ("record", "enum", "array", "map", "fixed", "union"). A reference to a
	// named type reports that type's kind. Other unions report "union".
	Type string
	// Nullable is true when the field's type is a union containing "null".
	Nullable bool
	// LogicalType is the logicalType attribute of the (unwrapped) type, e.g.
	// "timestamp-millis", or "".
	LogicalType string
}

// fieldSpec is what FromJSON needs beyond Field.
type fieldSpec struct {
	unionKey   string   // goavro's branch name for the non-null branch of a nullable union
	nullIndex  int      // position of "null" in a nullable union's branches
	symbols    []string // enum symbols, when Type is "enum"
	hasDefault bool
	defaultVal any    // the schema's default, decoded as JSON with UseNumber
	canonical  string // Parsing Canonical Form of the field's type (for Resolve)
}

// named is a named type (record, enum, fixed) defined inside a schema.
type named struct {
	kind    string
	symbols []string
}

// primitive reports whether t is an Avro primitive type name.
func primitive(t string) bool {
	switch t {
	case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
		return true
	}
	return false
}

// goavroLogical lists the logical types goavro implements as distinct codecs
// for primitive types; goavro names a union branch of such a type
// "<primitive>.<logicalType>". Other logical types are ignored by goavro and
// the branch carries the primitive's name.
var goavroLogical = map[string]bool{
	"long.timestamp-millis": true,
	"long.timestamp-micros": true,
	"int.time-millis":       true,
	"long.time-micros":      true,
	"int.date":              true,
}

// Parse parses an Avro schema that must be a record. The error says why a
// schema is rejected: invalid JSON, not a record, or refused by goavro.
// Parsing costs a few microseconds per field; do it once at startup.
func Parse(text []byte) (*Schema, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("parse schema: invalid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("parse schema: invalid JSON: data after the schema")
	}
	obj, ok := top.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("parse schema: want a record schema (a JSON object with \"type\": \"record\"), got %s", jsonKind(top))
	}
	if t, _ := obj["type"].(string); t != "record" {
		return nil, fmt.Errorf("parse schema: want a record schema, got type %s", describeJSON(obj["type"]))
	}
	codec, err := goavro.NewCodec(string(text))
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}

	canonical, err := canonicalForm(text)
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}

	s := &Schema{
		Name:        fullName(obj, ""),
		Codec:       codec,
		Fingerprint: rabin64([]byte(canonical)),
		canonical:   canonical,
		named:       make(map[string]named),
	}
	collectNamed(obj, "", s.named)
	ns := namespaceOf(s.Name)

	rawFields, _ := obj["fields"].([]any) // goavro has checked it is an array of objects
	s.Fields = make([]Field, 0, len(rawFields))
	s.specs = make([]fieldSpec, 0, len(rawFields))
	s.index = make(map[string]int, len(rawFields))
	for _, rf := range rawFields {
		fm, ok := rf.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("parse schema %s: field is %s, want an object", s.Name, jsonKind(rf))
		}
		name, _ := fm["name"].(string)
		f, spec := s.describeField(name, fm["type"], ns)
		spec.defaultVal, spec.hasDefault = fm["default"]
		var cb strings.Builder
		if err := writeCanonical(&cb, fm["type"], ns); err == nil {
			spec.canonical = cb.String()
		}
		s.index[name] = len(s.Fields)
		s.Fields = append(s.Fields, f)
		s.specs = append(s.specs, spec)
	}
	return s, nil
}

// Load reads the schema file at path in fsys and parses it. The error names
// the path.
func Load(fsys fs.FS, path string) (*Schema, error) {
	text, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("load schema %s: %w", path, err)
	}
	s, err := Parse(text)
	if err != nil {
		return nil, fmt.Errorf("load schema %s: %w", path, err)
	}
	return s, nil
}

// CanonicalForm returns the schema's Parsing Canonical Form as the Avro
// specification defines it; Fingerprint is its CRC-64-AVRO. It differs from
// Codec.CanonicalSchema() when the schema has logical types or nested
// namespaces (goavro keeps {"type":"long"} objects there), and then
// Fingerprint differs from Codec.Rabin.
func (s *Schema) CanonicalForm() string { return s.canonical }

// Field returns the top-level field called name.
func (s *Schema) Field(name string) (Field, bool) {
	i, ok := s.index[name]
	if !ok {
		return Field{}, false
	}
	return s.Fields[i], true
}

// canonicalField returns the Parsing Canonical Form of field i's type.
func (s *Schema) canonicalField(i int) string { return s.specs[i].canonical }

// describeField unwraps a nullable union and resolves the field's type.
func (s *Schema) describeField(name string, t any, ns string) (Field, fieldSpec) {
	f := Field{Name: name}
	var spec fieldSpec
	if members, ok := t.([]any); ok {
		var other []any
		for i, m := range members {
			if isNull(m) {
				f.Nullable = true
				spec.nullIndex = i
			} else {
				other = append(other, m)
			}
		}
		if !f.Nullable || len(other) != 1 {
			f.Type = "union"
			return f, spec
		}
		t = other[0]
	}
	kind, logical, symbols := s.resolve(t, ns)
	f.Type, f.LogicalType = kind, logical
	spec.symbols = symbols
	if f.Nullable {
		spec.unionKey = s.unionKey(t, kind, logical, ns)
	}
	return f, spec
}

// resolve returns the kind, logical type and (for enums) symbols of type t.
func (s *Schema) resolve(t any, ns string) (kind, logical string, symbols []string) {
	switch v := t.(type) {
	case string:
		if primitive(v) {
			return v, "", nil
		}
		if n, ok := s.lookupNamed(v, ns); ok {
			return n.kind, "", n.symbols
		}
		return v, "", nil
	case map[string]any:
		logical, _ = v["logicalType"].(string)
		inner, _ := v["type"].(string)
		switch inner {
		case "record", "enum", "fixed", "array", "map":
			if inner == "enum" {
				symbols = stringsOf(v["symbols"])
			}
			return inner, logical, symbols
		}
		k, _, sym := s.resolve(v["type"], ns)
		return k, logical, sym
	case []any:
		return "union", "", nil
	}
	return fmt.Sprint(t), "", nil
}

// unionKey returns the name goavro gives the non-null branch t of a nullable
// union: the primitive name, "<primitive>.<logicalType>" for logical types
// goavro implements, or the full name of a named type.
func (s *Schema) unionKey(t any, kind, logical, ns string) string {
	if primitive(kind) {
		if logical != "" && goavroLogical[kind+"."+logical] {
			return kind + "." + logical
		}
		return kind
	}
	switch v := t.(type) {
	case string:
		if _, ok := s.named[v]; ok {
			return v
		}
		if ns != "" {
			return ns + "." + v
		}
		return v
	case map[string]any:
		if _, ok := v["name"]; ok {
			return fullName(v, ns)
		}
	}
	return kind
}

func (s *Schema) lookupNamed(name, ns string) (named, bool) {
	if n, ok := s.named[name]; ok {
		return n, true
	}
	if ns != "" {
		n, ok := s.named[ns+"."+name]
		return n, ok
	}
	return named{}, false
}

// collectNamed records every named type defined in schema t, by full name.
func collectNamed(t any, ns string, out map[string]named) {
	switch v := t.(type) {
	case []any:
		for _, m := range v {
			collectNamed(m, ns, out)
		}
	case map[string]any:
		kind, _ := v["type"].(string)
		switch kind {
		case "record", "error", "enum", "fixed":
			full := fullName(v, ns)
			n := named{kind: kind}
			if kind == "error" {
				n.kind = "record"
			}
			if kind == "enum" {
				n.symbols = stringsOf(v["symbols"])
			}
			out[full] = n
			if fields, ok := v["fields"].([]any); ok {
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok {
						collectNamed(fm["type"], namespaceOf(full), out)
					}
				}
			}
		case "array":
			collectNamed(v["items"], ns, out)
		case "map":
			collectNamed(v["values"], ns, out)
		default:
			collectNamed(v["type"], ns, out)
		}
	}
}

// fullName returns the full name of a named type definition, applying the
// Avro rules: a dotted name is already full; otherwise the type's own
// namespace, else the enclosing one, qualifies it.
func fullName(def map[string]any, enclosing string) string {
	name, _ := def["name"].(string)
	if strings.Contains(name, ".") {
		return name
	}
	ns := enclosing
	if v, ok := def["namespace"].(string); ok {
		ns = v
	}
	if ns == "" {
		return name
	}
	return ns + "." + name
}

func namespaceOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

func isNull(t any) bool {
	switch v := t.(type) {
	case string:
		return v == "null"
	case map[string]any:
		return v["type"] == "null"
	}
	return false
}

func stringsOf(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
