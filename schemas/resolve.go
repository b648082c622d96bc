package schemas

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrIncompatible: a record written with one schema cannot be read with
// another by Avro's schema resolution rules, for the fields the reader
// needs. Returned, wrapped with the field and the reason, by Resolve and by
// Resolution.Apply; retrying will not help (dead-letter the record).
var ErrIncompatible = errors.New("incompatible writer schema")

// Resolution reads records decoded with a writer schema as if they had been
// written with a reader schema, for a chosen set of top-level fields, by the
// Avro specification's "Schema Resolution" rules:
//
//   - Both schemas are records with the same unqualified name.
//   - Fields are matched by name. A reader field the writer lacks takes the
//     reader's default; without a default it is incompatible.
//   - A field's writer type must equal its reader type or be promotable:
//     int to long, float or double; long to float or double; float to
//     double; string to bytes and bytes to string. Enum, record, array,
//     map and fixed match their own kind.
//   - A nullable writer field ["null", T] read as a non-null reader T is
//     resolved per record: a null value is incompatible for that record.
//   - Writer fields the reader does not name are ignored.
//
// Only the chosen fields are checked and converted: those a feature reads.
// Other fields of the writer record are left as they are, so a change to a
// field nobody reads never rejects a record.
//
// A Resolution is built once per (writer, reader, fields) by Resolve, costs
// nothing to keep and is immutable and safe for concurrent use. Apply does no
// work for a field the writer has with the reader's exact type, so the
// resolution of a schema with itself costs one length check per record.
type Resolution struct {
	Writer, Reader *Schema
	steps          []resolveStep
}

// resolveStep is what Apply does to one field.
type resolveStep struct {
	name    string
	op      resolveOp
	to      string // reader base type, for opConvert
	def     any    // native default, for opDefault
	notNull bool   // the writer field is nullable and the reader's is not
}

type resolveOp uint8

const (
	opCheck   resolveOp = iota // same type: only the null check, if notNull
	opConvert                  // promote to the reader type (and null check)
	opDefault                  // the writer lacks the field: set the default
)

// Resolve prepares reading records of writer as reader, for the named
// top-level fields of reader (the fields a consumer reads; all of reader's
// fields when fields is nil). The error wraps ErrIncompatible and names the
// first field that cannot be resolved and why; a field not in reader is an
// error too (a programming error of the caller: config checks fields
// against the reader schema at load). Cost: O(len(fields)); call it once per
// writer schema, not per record.
func Resolve(writer, reader *Schema, fields []string) (*Resolution, error) {
	if writer == nil || reader == nil {
		return nil, fmt.Errorf("%w: nil schema", ErrIncompatible)
	}
	if fields == nil {
		for _, f := range reader.Fields {
			fields = append(fields, f.Name)
		}
	}
	r := &Resolution{Writer: writer, Reader: reader}
	if wn, rn := unqualified(writer.Name), unqualified(reader.Name); wn != rn {
		return nil, fmt.Errorf("%w: writer record %s is not reader record %s (Avro resolution matches records by their unqualified name)", ErrIncompatible, writer.Name, reader.Name)
	}
	for _, name := range fields {
		ri, ok := reader.index[name]
		if !ok {
			return nil, fmt.Errorf("%w: field %q is not in the reader schema %s", ErrIncompatible, name, reader.Name)
		}
		rf, rspec := reader.Fields[ri], reader.specs[ri]
		wi, ok := writer.index[name]
		if !ok {
			if !rspec.hasDefault {
				return nil, fmt.Errorf("%w: field %q is not in writer schema %s and reader schema %s gives it no default", ErrIncompatible, name, writer.Name, reader.Name)
			}
			def, err := reader.nativeValue(ri, rspec.defaultVal)
			if err != nil {
				return nil, fmt.Errorf("%w: field %q: reader default: %v", ErrIncompatible, name, err)
			}
			if m, ok := def.(map[string]any); ok && rf.Nullable && len(m) == 1 {
				for _, v := range m { // store defaults unwrapped, like converted values
					def = v
				}
			}
			r.steps = append(r.steps, resolveStep{name: name, op: opDefault, def: def})
			continue
		}
		wf := writer.Fields[wi]
		if wf.Type == "union" || rf.Type == "union" {
			if wf.Type == rf.Type && writer.canonicalField(wi) == reader.canonicalField(ri) {
				continue
			}
			return nil, fmt.Errorf("%w: field %q: unions other than [\"null\", T] resolve only against the identical union (writer %s, reader %s)", ErrIncompatible, name, describeType(wf), describeType(rf))
		}
		notNull := wf.Nullable && !rf.Nullable
		switch {
		case wf.Type == rf.Type:
			if notNull {
				r.steps = append(r.steps, resolveStep{name: name, op: opCheck, notNull: true})
			}
		case promotable(wf.Type, rf.Type):
			r.steps = append(r.steps, resolveStep{name: name, op: opConvert, to: rf.Type, notNull: notNull})
		default:
			return nil, fmt.Errorf("%w: field %q is %s in writer schema %s and %s in reader schema %s; Avro promotes only int to long, float or double, long to float or double, float to double, and string to and from bytes", ErrIncompatible, name, describeType(wf), writer.Name, describeType(rf), reader.Name)
		}
	}
	return r, nil
}

// Apply rewrites rec, a native record decoded with r.Writer, in place so
// that the resolved fields hold what the reader expects: the reader's
// default for a field the writer lacks, a promoted value (int32 to int64,
// integers and float32 to float64...) for a promoted field. Values are stored
// unwrapped (not in goavro's union map); the accessors Float, Int and String
// read both forms. The error wraps ErrIncompatible: a null value of a
// nullable writer field the reader declares non-null. It allocates only
// when a promoted value must be boxed.
func (r *Resolution) Apply(rec map[string]any) error {
	for i := range r.steps {
		st := &r.steps[i]
		if st.op == opDefault {
			rec[st.name] = st.def
			continue
		}
		v := unwrapUnion(rec[st.name])
		if v == nil {
			if st.notNull {
				return fmt.Errorf("%w: field %q is null; writer schema %s allows null, reader schema %s does not", ErrIncompatible, st.name, r.Writer.Name, r.Reader.Name)
			}
			continue
		}
		if st.op == opConvert {
			rec[st.name] = promote(v, st.to)
		} else {
			rec[st.name] = v
		}
	}
	return nil
}

// Identity reports whether Apply does nothing: every resolved field has the
// same type in both schemas and is not narrowed from nullable.
func (r *Resolution) Identity() bool { return len(r.steps) == 0 }

// promotable reports whether Avro's resolution promotes writer type w to
// reader type r.
func promotable(w, r string) bool {
	switch w {
	case "int":
		return r == "long" || r == "float" || r == "double"
	case "long":
		return r == "float" || r == "double"
	case "float":
		return r == "double"
	case "string":
		return r == "bytes"
	case "bytes":
		return r == "string"
	}
	return false
}

// promote converts a goavro native value of a promotable writer type to the
// reader type to; a value of an unexpected Go type is returned unchanged (the
// accessors then report it).
func promote(v any, to string) any {
	switch to {
	case "long":
		if x, ok := v.(int32); ok {
			return int64(x)
		}
	case "float":
		switch x := v.(type) {
		case int32:
			return float32(x)
		case int64:
			return float32(x)
		case time.Time:
			return float32(x.UnixMilli())
		}
	case "double":
		switch x := v.(type) {
		case int32:
			return float64(x)
		case int64:
			return float64(x)
		case float32:
			return float64(x)
		case time.Time:
			return float64(x.UnixMilli())
		}
	case "string":
		if x, ok := v.([]byte); ok {
			return string(x)
		}
	case "bytes":
		if x, ok := v.(string); ok {
			return []byte(x)
		}
	}
	return v
}

// unwrapUnion returns the value inside goavro's single-entry union map, or v.
func unwrapUnion(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, inner := range m {
			return inner
		}
	}
	return v
}

func unqualified(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// describeType names a field's type for messages: "double", "nullable long".
func describeType(f Field) string {
	if f.Nullable {
		return "nullable " + f.Type
	}
	return f.Type
}
