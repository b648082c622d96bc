package schemas_test

import (
	"testing"

	"github.com/featurepipe/featurepipe/schemas"
)

// TestProjectRefuses: Project compiles only what it decodes exactly;
// everything else stays with DecodeBinary.
func TestProjectRefuses(t *testing.T) {
	const base = `{"type":"record","name":"R","fields":[{"name":"k","type":"string"},{"name":"n","type":"long"}`
	cases := []struct {
		name, schema string
		fields       []string
		targets      []schemas.Target
		ok           bool
	}{
		{"primitives", base + `]}`, []string{"k", "n"}, []schemas.Target{schemas.AsString, schemas.AsInt}, true},
		{"a long as a float and a string", base + `]}`, []string{"n"}, []schemas.Target{schemas.AsFloat}, true},
		{"an array field", base + `,{"name":"a","type":{"type":"array","items":"int"}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"an enum field", base + `,{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a three-branch union", base + `,{"name":"u","type":["null","int","string"]}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a decimal", base + `,{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4}}]}`, []string{"k"}, []schemas.Target{schemas.AsString}, false},
		{"a missing field", base + `]}`, []string{"x"}, []schemas.Target{schemas.AsString}, false},
		{"a string as a number", base + `]}`, []string{"k"}, []schemas.Target{schemas.AsFloat}, false},
		{"a double as an integer", `{"type":"record","name":"R","fields":[{"name":"d","type":"double"}]}`, []string{"d"}, []schemas.Target{schemas.AsInt}, false},
		{"one field twice", base + `]}`, []string{"k", "k"}, []schemas.Target{schemas.AsString, schemas.AsString}, false},
		{"a long read three ways", base + `]}`, []string{"n"}, []schemas.Target{schemas.AsString | schemas.AsInt | schemas.AsFloat}, true},
		{"a string also as an int", base + `]}`, []string{"k"}, []schemas.Target{schemas.AsString | schemas.AsInt}, false},
		{"a boolean", `{"type":"record","name":"R","fields":[{"name":"b","type":"boolean"}]}`, []string{"b"}, []schemas.Target{schemas.AsBool}, true},
		{"a nullable boolean", `{"type":"record","name":"R","fields":[{"name":"b","type":["null","boolean"]}]}`, []string{"b"}, []schemas.Target{schemas.AsBool}, true},
		{"a boolean as a string", `{"type":"record","name":"R","fields":[{"name":"b","type":"boolean"}]}`, []string{"b"}, []schemas.Target{schemas.AsString}, false},
		{"a long as a boolean", base + `]}`, []string{"n"}, []schemas.Target{schemas.AsBool}, false},
		{"a timestamp as an int, not a float", `{"type":"record","name":"R","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}`, []string{"t"}, []schemas.Target{schemas.AsInt | schemas.AsFloat}, false},
		{"no target", base + `]}`, []string{"k"}, []schemas.Target{0}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := schemas.Parse([]byte(c.schema))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Project(c.fields, c.targets); ok != c.ok {
				t.Fatalf("Project ok = %v, want %v", ok, c.ok)
			}
		})
	}
}

// TestProjectionDecodesBooleans: an AsBool slot holds the record's boolean,
// as Bool reads it from DecodeBinary's record.
func TestProjectionDecodesBooleans(t *testing.T) {
	s, err := schemas.Parse([]byte(`{"type":"record","name":"R","fields":[{"name":"k","type":"string"},{"name":"b","type":["null","boolean"]},{"name":"c","type":"boolean"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.Project([]string{"b", "c"}, []schemas.Target{schemas.AsBool, schemas.AsBool})
	if !ok {
		t.Fatal("Project refused two booleans")
	}
	for _, c := range []struct{ b, c bool }{{true, false}, {false, true}, {true, true}, {false, false}} {
		rec := map[string]any{"k": "x", "b": map[string]any{"boolean": c.b}, "c": c.c}
		body, err := s.Codec.BinaryFromNative(nil, rec)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]schemas.Projected, p.Slots())
		if !p.Decode(body, out) {
			t.Fatalf("%v: not decoded", rec)
		}
		if out[0].Bool != c.b || out[1].Bool != c.c {
			t.Errorf("%v: projected %v %v", rec, out[0].Bool, out[1].Bool)
		}
	}
}
